//! One error type for everything that can go wrong while loading or running a model.
//!
//! Loading errors name the file and the field or tensor at fault, because the
//! usual cause is a bad or mismatched checkpoint and the user must know which one.

use std::path::PathBuf;

/// Errors raised by the model crate.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: field `{field}`: {problem}")]
    Field {
        path: PathBuf,
        field: String,
        problem: String,
    },
    #[error("{path}: unsupported architecture `{arch}` (supported: llama, qwen2, qwen3)")]
    UnsupportedArch { path: PathBuf, arch: String },
    #[error("{path}: tensor `{name}`: {problem}")]
    Tensor {
        path: PathBuf,
        name: String,
        problem: String,
    },
    #[error("{path}: {problem}")]
    Checkpoint { path: PathBuf, problem: String },
    /// A LoRA adapter folder does not fit the model; the message names the file and tensor.
    #[error("adapter {0}")]
    Adapter(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("invalid input: {0}")]
    Input(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, ModelError>;

impl ModelError {
    pub(crate) fn field(path: impl Into<PathBuf>, field: &str, problem: impl Into<String>) -> Self {
        ModelError::Field {
            path: path.into(),
            field: field.to_string(),
            problem: problem.into(),
        }
    }

    pub(crate) fn tensor(path: impl Into<PathBuf>, name: &str, problem: impl Into<String>) -> Self {
        ModelError::Tensor {
            path: path.into(),
            name: name.to_string(),
            problem: problem.into(),
        }
    }
}
