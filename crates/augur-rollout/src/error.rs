//! Errors of the rollout engine.

/// What can go wrong before or during generation.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("invalid sampling parameter `{field}`: {problem}")]
    Param {
        field: &'static str,
        problem: String,
    },
    #[error("invalid request: {0}")]
    Request(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error(transparent)]
    Model(#[from] augur_model::ModelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Kernels(#[from] augur_kernels::Error),
}

pub type Result<T> = std::result::Result<T, RolloutError>;
