//! One error type for the crate, so callers can `?` any of its functions into their own error.

/// Everything that can go wrong in `augur-train`. Bad input is reported here rather than by a panic.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (device, dtype or shape problem inside candle).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// An argument had the wrong shape or length; the message names it.
    #[error("shape mismatch: {0}")]
    Shape(String),

    /// An argument or configuration value is outside its valid range; the message names it.
    #[error("invalid argument: {0}")]
    Invalid(String),

    /// The optimizer skipped this many steps in a row because the gradients were not finite.
    #[error("{count} consecutive optimizer steps skipped on non-finite gradients (limit {limit})")]
    TooManySkippedSteps { count: usize, limit: usize },

    /// A GRPO run configuration is malformed; the message names the key.
    #[error("config: {0}")]
    Config(String),

    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },

    /// Loading or running the model failed.
    #[error(transparent)]
    Model(#[from] augur_model::ModelError),

    /// Rollout generation failed.
    #[error(transparent)]
    Rollout(#[from] augur_rollout::RolloutError),

    /// The prompt sampler rejected a call or a state.
    #[error(transparent)]
    Sampler(#[from] augur_sampler::SamplerError),

    /// A run folder holds something the run would replace or mix with; the message names it.
    #[error("{0}")]
    RunFolder(String),

    /// A checkpoint folder is incomplete or does not fit the run; the message names the folder
    /// and the file.
    #[error("checkpoint {0}")]
    Checkpoint(String),

    /// A LoRA adapter file does not fit the model; the message names the file and the tensor.
    #[error("adapter {0}")]
    Adapter(String),

    /// A dataset line is malformed or does not fit the model; the message names file, line and id.
    #[error("dataset {0}")]
    Data(String),

    /// A `metrics.jsonl` line is malformed; the message names the file and line.
    #[error("metrics {0}")]
    Metrics(String),

    /// Optimizer state being imported does not match the parameters; the message names the key.
    #[error("optimizer state: {0}")]
    State(String),
}

/// `Result` with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
