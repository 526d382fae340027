//! The Hub connection: endpoint, cache folder, token and offline mode, read from the same
//! environment variables as Python's `huggingface_hub`, plus the HTTP plumbing (retries, and
//! turning error statuses into [`HubError`]s that name the repo and file).

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};

use crate::error::{io, HubError, Result};

/// Where and how to reach the Hub. [`Hub::from_env`] is what the CLI uses; tests set fields
/// through the `with_*` methods instead of the process environment.
#[derive(Clone, Debug)]
pub struct Hub {
    pub(crate) endpoint: String,
    pub(crate) cache_dir: PathBuf,
    pub(crate) token: Option<String>,
    pub(crate) offline: bool,
    pub(crate) progress: bool,
    pub(crate) chunk_size: usize,
    pub(crate) retries: u32,
    pub(crate) retry_wait: Duration,
}

const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

impl Hub {
    /// `HF_ENDPOINT` (default huggingface.co); the cache `HF_HUB_CACHE`, else `$HF_HOME/hub`,
    /// else `~/.cache/huggingface/hub` (the Python layout, so either side reuses the other's
    /// downloads); the token `HF_TOKEN`, else `$HF_HOME/token`; `HF_HUB_OFFLINE=1` forbids
    /// network access and answers from the cache only.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let hf_home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            let home = var("HOME").map(PathBuf::from).unwrap_or_default();
            home.join(".cache/huggingface")
        });
        let cache_dir = var("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let token = var("HF_TOKEN").or_else(|| {
            std::fs::read_to_string(hf_home.join("token"))
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
        });
        Self {
            endpoint: var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.into()),
            cache_dir,
            token,
            offline,
            progress: true,
            chunk_size: 10_000_000,
            retries: 2,
            retry_wait: Duration::from_millis(500),
        }
        .normalised()
    }

    /// A connection to `endpoint` caching into `cache_dir`, anonymous and online.
    pub fn new(endpoint: &str, cache_dir: PathBuf) -> Self {
        Self {
            endpoint: endpoint.into(),
            cache_dir,
            token: None,
            offline: false,
            progress: false,
            chunk_size: 10_000_000,
            retries: 2,
            retry_wait: Duration::from_millis(500),
        }
        .normalised()
    }

    fn normalised(mut self) -> Self {
        self.endpoint = self.endpoint.trim_end_matches('/').to_string();
        self
    }

    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// Bytes per ranged request; a dropped transfer resumes from the last whole chunk.
    pub fn with_chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes.max(1);
        self
    }

    /// Extra attempts after a transient failure (connection lost, 429, 5xx), and the first
    /// wait (doubled each time).
    pub fn with_retries(mut self, retries: u32, first_wait: Duration) -> Self {
        self.retries = retries;
        self.retry_wait = first_wait;
        self
    }

    /// Progress bars on stderr (hidden when stderr is not a terminal).
    pub fn with_progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    pub fn cache_dir(&self) -> &std::path::Path {
        &self.cache_dir
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Runs `fut` on a private runtime: the crate's API is blocking so that callers (the CLI,
    /// the trainer's push thread) need no async runtime of their own. One worker suffices for
    /// network I/O and keeps hf-hub's chunks of a file in order (a cut transfer then keeps
    /// every chunk before the cut); checksums run on the blocking pool.
    pub(crate) fn block_on<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(io(&self.cache_dir))?
            .block_on(fut)
    }

    pub(crate) fn client(&self) -> Result<reqwest::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = &self.token {
            let value = format!("Bearer {t}").parse().map_err(|_| HubError::Repo {
                repo: "(token)".into(),
                why: "HF_TOKEN holds characters that cannot go in an HTTP header".into(),
            })?;
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        reqwest::Client::builder()
            .user_agent(concat!("augur/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .build()
            .map_err(|e| HubError::Unreachable {
                repo: "(client)".into(),
                endpoint: self.endpoint.clone(),
                what: "setting up HTTP".into(),
                reason: e.to_string(),
            })
    }

    /// Sends the request `build` makes, again after transient failures; any other status is
    /// turned into an error by [`Hub::check`].
    pub(crate) async fn send(
        &self,
        at: &Target<'_>,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response> {
        let mut wait = self.retry_wait;
        for attempt in 0..=self.retries {
            let last = attempt == self.retries;
            match build().send().await {
                Ok(r) if is_transient(r.status()) && !last => {}
                Ok(r) => return self.check(at, r).await,
                Err(e) if last || !(e.is_connect() || e.is_timeout() || e.is_request()) => {
                    return Err(HubError::Unreachable {
                        repo: at.repo.into(),
                        endpoint: self.endpoint.clone(),
                        what: at.what.clone(),
                        reason: error_chain(&e),
                    })
                }
                Err(_) => {}
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
        unreachable!("the last attempt returns")
    }

    /// Passes a success through; maps 401/403/404 (by the Hub's `x-error-code`) and the rest.
    pub(crate) async fn check(&self, at: &Target<'_>, r: Response) -> Result<Response> {
        let status = r.status();
        if status.is_success() {
            return Ok(r);
        }
        let (repo, revision) = (at.repo.to_string(), at.revision.to_string());
        let code = r
            .headers()
            .get("x-error-code")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Err(match (status, code.as_deref(), at.file) {
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, ..) if at.write => {
                HubError::WriteRefused {
                    repo,
                    what: at.what.clone(),
                    status: status.as_u16(),
                }
            }
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, ..) => HubError::Unauthorized {
                repo,
                what: at.what.clone(),
                auth: match self.token {
                    None => "no token was given (set HF_TOKEN or write $HF_HOME/token)",
                    Some(_) => "the token given does not grant access to it",
                },
            },
            (StatusCode::NOT_FOUND, Some("RevisionNotFound"), _) => {
                HubError::RevisionNotFound { repo, revision }
            }
            (StatusCode::NOT_FOUND, Some("EntryNotFound") | None, Some(file)) => {
                HubError::FileNotFound {
                    repo,
                    revision,
                    file: file.into(),
                }
            }
            (StatusCode::NOT_FOUND, ..) => HubError::RepoNotFound {
                repo,
                endpoint: self.endpoint.clone(),
            },
            _ => {
                let body = r.text().await.unwrap_or_default();
                HubError::Http {
                    repo,
                    what: at.what.clone(),
                    status: status.as_u16(),
                    body: body.chars().take(300).collect(),
                }
            }
        })
    }
}

/// What a request is about, for error messages.
pub(crate) struct Target<'a> {
    pub repo: &'a str,
    pub revision: &'a str,
    /// The file, when the request is about one.
    pub file: Option<&'a str>,
    pub what: String,
    /// A write (push): 401/403 then means the token, not a missing repo.
    pub write: bool,
}

fn is_transient(s: StatusCode) -> bool {
    s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error()
}

/// An error and its causes on one line (reqwest's own message omits the cause).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `revision` as one URL path segment (`refs/pr/1` → `refs%2Fpr%2F1`).
pub(crate) fn url_revision(revision: &str) -> String {
    revision.replace('/', "%2F")
}
