//! Error type of the sampler crate: every bad input is reported as a value, never a panic.

use thiserror::Error;

/// Everything that can go wrong in the sampler, with the offending value in the message.
#[derive(Debug, Error)]
pub enum SamplerError {
    /// A caller passed a value outside its valid range (batch size, rollouts, ids, config fields).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Saved state does not fit the sampler it is loaded into (other method, other version, bad shape).
    #[error("invalid state: {0}")]
    InvalidState(String),
    /// Configuration that cannot be turned into a sampler.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// A file could not be read or written.
    #[error("io error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// JSON (protocol message or state) could not be parsed or produced.
    #[error("json error: {0}")]
    Json(#[from] serde_json::Error),
}

impl SamplerError {
    /// Wraps an io error with the path it concerns, so messages say which file failed.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        SamplerError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, SamplerError>;
