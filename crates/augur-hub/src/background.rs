//! Pushing checkpoints while training goes on: a thread that takes checkpoint folders from a
//! queue and pushes each to `<repo>/<folder name>/`, so a training step never waits for the
//! network. A failed push is reported at the end and never stops training (the checkpoint is
//! on disk; `augur push` can send it later).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Sender};
use std::thread::JoinHandle;

use crate::error::{HubError, Result};
use crate::hub::Hub;
use crate::id::HubId;
use crate::push::PushOptions;

/// The push thread of a run.
pub struct BackgroundPush {
    queue: Option<Sender<PathBuf>>,
    thread: Option<JoinHandle<Vec<(PathBuf, HubError)>>>,
}

impl BackgroundPush {
    /// Starts the thread; fails at once (before any training) on a bad repo id or a missing
    /// token, the two mistakes that would otherwise surface only at the first checkpoint.
    pub fn start(hub: Hub, repo: &str, private: bool, revision: &str) -> Result<Self> {
        let id = HubId::parse(repo)?;
        if id.revision != "main" {
            return Err(HubError::BadId {
                spec: repo.into(),
                why: "give the branch as hub.revision, not with '@'",
            });
        }
        if hub.token.is_none() {
            return Err(HubError::NoToken { repo: repo.into() });
        }
        if hub.offline {
            return Err(HubError::Repo {
                repo: repo.into(),
                why: "HF_HUB_OFFLINE=1 forbids pushing".into(),
            });
        }
        let (queue, jobs) = channel::<PathBuf>();
        let (repo, revision) = (repo.to_string(), revision.to_string());
        let thread = std::thread::spawn(move || {
            let mut failed = Vec::new();
            for dir in jobs {
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let opts = PushOptions {
                    private,
                    revision: revision.clone(),
                    path_in_repo: name.clone(),
                    message: format!("augur {}: {name}", env!("CARGO_PKG_VERSION")),
                };
                if let Err(e) = hub.push_folder(&dir, &repo, &opts) {
                    failed.push((dir, e));
                }
            }
            failed
        });
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Queues a finished checkpoint folder.
    pub fn push(&self, dir: &Path) {
        if let Some(q) = &self.queue {
            // The thread only ends after `finish` closes the queue.
            q.send(dir.to_path_buf()).ok();
        }
    }

    /// Waits for the queued pushes; returns the folders that could not be pushed, and why.
    pub fn finish(mut self) -> Vec<(PathBuf, HubError)> {
        self.queue.take();
        self.thread
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for BackgroundPush {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}
