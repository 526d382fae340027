//! Error values of the reward crate.
//!
//! Verifying a bad completion is never an error (it is a `Score` of 0 with a reason); errors are reserved for
//! problems the caller must fix: unreadable files, malformed JSONL lines, a sandbox that cannot start at all.

use std::path::PathBuf;

/// Everything that can go wrong outside of scoring itself.
#[derive(Debug, thiserror::Error)]
pub enum RewardError {
    /// A file could not be read or written.
    #[error("io error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSONL line was not valid JSON or lacked a required field.
    #[error("{path}:{line}: {message}")]
    BadLine {
        /// The input file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        message: String,
    },
    /// The sandbox could not run even a trivial program (no usable Python interpreter, spawn failure...).
    #[error("sandbox unavailable: {0}")]
    Sandbox(String),
}

impl RewardError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RewardError::Io {
            path: path.into(),
            source,
        }
    }
}
