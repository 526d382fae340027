//! Every failure names the repo (and the file or step) so that a user can act on it.

use std::path::PathBuf;

/// What went wrong talking to the Hub or its local cache.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{spec:?} is not a Hub id (org/name[@revision]): {why}")]
    BadId { spec: String, why: &'static str },
    #[error("{repo}: the Hub answered 401 Unauthorized for {what}: the repo does not exist, or it is private or gated and {auth}")]
    Unauthorized {
        repo: String,
        what: String,
        auth: &'static str,
    },
    #[error("{repo}: the Hub refused {what} ({status}): the token is invalid or lacks write access to this repo")]
    WriteRefused {
        repo: String,
        what: String,
        status: u16,
    },
    #[error("{repo}: no such repo on {endpoint} (404)")]
    RepoNotFound { repo: String, endpoint: String },
    #[error("{repo}: no revision {revision:?} (404: not a branch, tag or commit of this repo)")]
    RevisionNotFound { repo: String, revision: String },
    #[error("{repo}@{revision}: no file {file} (404)")]
    FileNotFound {
        repo: String,
        revision: String,
        file: String,
    },
    #[error("{repo}@{revision}: {file} is not in the local cache {cache} and HF_HUB_OFFLINE=1 forbids downloading it")]
    OfflineMiss {
        repo: String,
        revision: String,
        file: String,
        cache: PathBuf,
    },
    #[error("{repo}@{revision}: downloading {file} failed: {reason}; the finished part is kept, and running the command again resumes it")]
    Transfer {
        repo: String,
        revision: String,
        file: String,
        reason: String,
    },
    #[error("{repo}@{revision}: {file} arrived damaged ({what}): the transfer was cut short or altered; the bad copy was removed, run again to download it again")]
    Damaged {
        repo: String,
        revision: String,
        file: String,
        what: String,
    },
    #[error("{repo}: cannot reach the Hub at {endpoint} for {what}: {reason}")]
    Unreachable {
        repo: String,
        endpoint: String,
        what: String,
        reason: String,
    },
    #[error("{repo}: {what}: the Hub answered {status}: {body}")]
    Http {
        repo: String,
        what: String,
        status: u16,
        body: String,
    },
    #[error("{repo}: {why}")]
    Repo { repo: String, why: String },
    #[error("pushing to {repo} needs a token with write access: set HF_TOKEN or write it to $HF_HOME/token (`huggingface-cli login` does)")]
    NoToken { repo: String },
    #[error("{spec}: no such file or folder here, and as a Hub id: {hub}")]
    NotLocal { spec: String, hub: Box<HubError> },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = HubError> = std::result::Result<T, E>;

/// Maps an I/O error to [`HubError::Io`] naming `path`.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> HubError {
    let path = path.into();
    move |source| HubError::Io { path, source }
}
