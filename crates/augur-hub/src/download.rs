//! Downloads into the shared Hub cache (`models--org--name/{blobs,snapshots,refs}`, the layout
//! Python's `huggingface_hub` uses): only the files a model needs, several at once, each checked
//! against the size and checksum the Hub lists, and reused from the cache when present.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use hf_hub::api::tokio::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{io, HubError, Result};
use crate::hub::{error_chain, url_revision, Hub, Target};
use crate::id::{HubFolder, HubId, RepoKind};

/// Files a model folder needs besides its weights; all but `config.json` are taken when the
/// repo has them.
const MODEL_FILES: [&str; 6] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
];
const INDEX: &str = "model.safetensors.index.json";
const SINGLE: &str = "model.safetensors";
/// Files downloaded at the same time.
const PARALLEL_FILES: usize = 4;

/// `api/models/{repo}/revision/{rev}?blobs=true`: the commit a revision points at and its files.
#[derive(Deserialize)]
pub(crate) struct RevisionInfo {
    pub sha: String,
    pub siblings: Vec<Sibling>,
}

#[derive(Deserialize)]
pub(crate) struct Sibling {
    pub rfilename: String,
    size: Option<u64>,
    lfs: Option<Lfs>,
}

#[derive(Clone, Deserialize)]
struct Lfs {
    sha256: String,
    size: u64,
}

/// What a downloaded file must match.
#[derive(Clone)]
struct Expected {
    size: Option<u64>,
    sha256: Option<String>,
}

impl Hub {
    /// The local folder holding model `id` (config, tokenizer files and the safetensors
    /// weights, sharded per the index): downloaded once, then served from the cache. Offline,
    /// or when the Hub cannot be reached, the cached snapshot is used if it is complete.
    pub fn model_folder(&self, id: &HubId) -> Result<PathBuf> {
        self.block_on(self.model_folder_async(id))
    }

    /// The local folder holding every file under `folder.subdir` of the repo (an augur
    /// checkpoint: adapter, optimizer, trainer state, config).
    pub fn folder(&self, folder: &HubFolder) -> Result<PathBuf> {
        self.block_on(self.folder_async(folder))
    }

    async fn model_folder_async(&self, id: &HubId) -> Result<PathBuf> {
        let info = match self.online_info(id).await? {
            Some(info) => info,
            None => return self.cached_model(id),
        };
        let files: HashMap<&str, &Sibling> = info
            .siblings
            .iter()
            .map(|s| (s.rfilename.as_str(), s))
            .collect();
        let bad = |why: String| HubError::Repo {
            repo: id.display(),
            why,
        };
        if !files.contains_key("config.json") {
            return Err(bad(
                "has no config.json at this revision: not a transformers model repo".into(),
            ));
        }
        let mut wanted: Vec<&Sibling> = MODEL_FILES
            .iter()
            .filter_map(|f| files.get(f).copied())
            .collect();
        let snapshot = self.snapshot_dir(id, &info.sha);
        if let Some(index) = files.get(INDEX) {
            self.fetch(id, &info.sha, &[index]).await?;
            for shard in shards(&snapshot.join(INDEX))? {
                match files.get(shard.as_str()) {
                    Some(s) => wanted.push(s),
                    None => {
                        return Err(bad(format!(
                            "{INDEX} names shard {shard}, which the repo does not have"
                        )))
                    }
                }
            }
        } else if let Some(single) = files.get(SINGLE) {
            wanted.push(single);
        } else {
            let names: Vec<&str> = files.keys().copied().take(12).collect();
            return Err(bad(format!(
                "has neither {SINGLE} nor {INDEX} (augur loads safetensors weights); it has {names:?}"
            )));
        }
        self.fetch(id, &info.sha, &wanted).await?;
        self.write_ref(id, &info.sha)?;
        Ok(snapshot)
    }

    async fn folder_async(&self, folder: &HubFolder) -> Result<PathBuf> {
        let id = &folder.id;
        let info = match self.online_info(id).await? {
            Some(info) => info,
            None => {
                let dir = self
                    .snapshot_dir(id, &self.cached_commit(id)?)
                    .join(&folder.subdir);
                return match dir.is_dir() {
                    true => Ok(dir),
                    false => Err(self.offline_miss(id, &folder.subdir)),
                };
            }
        };
        let prefix = match folder.subdir.as_str() {
            "" => String::new(),
            s => format!("{s}/"),
        };
        let wanted: Vec<&Sibling> = info
            .siblings
            .iter()
            .filter(|s| s.rfilename.starts_with(&prefix) && !s.rfilename.starts_with(".git"))
            .collect();
        if wanted.is_empty() {
            return Err(HubError::FileNotFound {
                repo: id.repo.clone(),
                revision: id.revision.clone(),
                file: format!("{prefix} (no files under this folder)"),
            });
        }
        self.fetch(id, &info.sha, &wanted).await?;
        self.write_ref(id, &info.sha)?;
        Ok(self.snapshot_dir(id, &info.sha).join(&folder.subdir))
    }

    /// The revision's commit and file list, or `None` when the cache must answer instead
    /// (offline mode, or the Hub unreachable: Python's `huggingface_hub` falls back the same way).
    pub(crate) async fn online_info(&self, id: &HubId) -> Result<Option<RevisionInfo>> {
        if self.offline {
            return Ok(None);
        }
        match self.revision_info(id).await {
            Ok(info) => Ok(Some(info)),
            Err(e @ HubError::Unreachable { .. }) => match self.cached_commit(id) {
                Ok(_) => Ok(None),
                Err(_) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn revision_info(&self, id: &HubId) -> Result<RevisionInfo> {
        let url = format!(
            "{}/api/{}/{}/revision/{}?blobs=true",
            self.endpoint,
            id.kind.plural(),
            id.repo,
            url_revision(&id.revision)
        );
        let at = Target {
            repo: &id.repo,
            revision: &id.revision,
            file: None,
            what: format!("revision {:?}", id.revision),
            write: false,
        };
        let client = self.client()?;
        let r = self.send(&at, || client.get(&url)).await?;
        r.json().await.map_err(|e| HubError::Repo {
            repo: id.repo.clone(),
            why: format!("unreadable revision info from {url}: {}", error_chain(&e)),
        })
    }

    /// Downloads the files not yet in the snapshot of `commit`, [`PARALLEL_FILES`] at a time.
    pub(crate) async fn fetch(&self, id: &HubId, commit: &str, files: &[&Sibling]) -> Result<()> {
        let api = ApiBuilder::from_cache(Cache::new(self.cache_dir.clone()))
            .with_endpoint(self.endpoint.clone())
            .with_token(self.token.clone())
            .with_progress(self.progress)
            .with_chunk_size(Some(self.chunk_size))
            .build()
            .map_err(|e| HubError::Repo {
                repo: id.repo.clone(),
                why: format!("setting up the download client: {e}"),
            })?;
        // By commit, so every file comes from the same snapshot even if a branch moves meanwhile.
        let repo = api.repo(Repo::with_revision(
            id.repo.clone(),
            repo_type(id.kind),
            commit.into(),
        ));
        let snapshot = self.snapshot_dir(id, commit);
        futures::stream::iter(files.iter().map(|s| {
            let expected = Expected {
                size: s.lfs.as_ref().map(|l| l.size).or(s.size),
                sha256: s.lfs.as_ref().map(|l| l.sha256.clone()),
            };
            self.fetch_file(&repo, id, &snapshot, &s.rfilename, expected)
        }))
        .buffer_unordered(PARALLEL_FILES)
        .try_collect::<Vec<()>>()
        .await?;
        Ok(())
    }

    async fn fetch_file(
        &self,
        api: &ApiRepo,
        id: &HubId,
        snapshot: &Path,
        file: &str,
        expected: Expected,
    ) -> Result<()> {
        let dest = snapshot.join(file);
        if let Ok(meta) = std::fs::metadata(&dest) {
            if expected.size.is_none_or(|s| s == meta.len()) {
                return Ok(());
            }
        }
        let mut wait = self.retry_wait;
        let mut attempt = 0;
        let path = loop {
            match api.download(file).await {
                Ok(p) => break p,
                Err(e) => {
                    let (err, transient) = self.download_error(id, file, e);
                    if !transient || attempt >= self.retries {
                        return Err(err);
                    }
                    attempt += 1;
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        };
        let damaged = |what: String| {
            let blob = std::fs::canonicalize(&path).ok();
            std::fs::remove_file(&path).ok();
            if let Some(blob) = blob {
                std::fs::remove_file(blob).ok();
            }
            HubError::Damaged {
                repo: id.repo.clone(),
                revision: id.revision.clone(),
                file: file.into(),
                what,
            }
        };
        let got = std::fs::metadata(&path).map_err(io(&path))?.len();
        if let Some(size) = expected.size.filter(|&s| s != got) {
            return Err(damaged(format!("{got} bytes, the Hub lists {size}")));
        }
        if let Some(sha) = expected.sha256 {
            let file_path = path.clone();
            let digest = tokio::task::spawn_blocking(move || sha256_file(&file_path))
                .await
                .expect("hashing does not panic")?;
            if digest != sha {
                return Err(damaged(format!("sha256 {digest}, the Hub lists {sha}")));
            }
        }
        // hf-hub leaves `blobs/<etag>.lock` behind; Python keeps its locks in `.locks/`.
        if let Ok(blob) = std::fs::canonicalize(&path) {
            std::fs::remove_file(blob.with_extension("lock")).ok();
        }
        Ok(())
    }

    /// The user-facing error for a failed hf-hub download, and whether trying again may help.
    fn download_error(&self, id: &HubId, file: &str, e: ApiError) -> (HubError, bool) {
        let (repo, revision) = (id.repo.clone(), id.revision.clone());
        let status = match &e {
            ApiError::RequestError(r) => r.status().map(|s| s.as_u16()),
            _ => None,
        };
        let transfer = |reason: String| HubError::Transfer {
            repo: repo.clone(),
            revision: revision.clone(),
            file: file.into(),
            reason,
        };
        match (status, e) {
            (Some(401), _) => (
                HubError::Unauthorized {
                    repo,
                    what: file.into(),
                    auth: match self.token {
                        None => "no token was given (set HF_TOKEN or write $HF_HOME/token)",
                        Some(_) => "the token given does not grant access to it",
                    },
                },
                false,
            ),
            (Some(404), _) => (
                HubError::FileNotFound {
                    repo,
                    revision,
                    file: file.into(),
                },
                false,
            ),
            (Some(s), e) => (transfer(format!("HTTP {s}: {e}")), s == 429 || s >= 500),
            (None, ApiError::MissingHeader(h)) => (
                HubError::Repo {
                    repo,
                    why: format!("the server's answer for {file} lacks the {h} header: is HF_ENDPOINT a Hugging Face Hub?"),
                },
                false,
            ),
            (None, e) => (transfer(error_chain(&e)), true),
        }
    }

    fn repo_dir(&self, id: &HubId) -> PathBuf {
        self.cache_dir
            .join(Repo::new(id.repo.clone(), repo_type(id.kind)).folder_name())
    }

    pub(crate) fn snapshot_dir(&self, id: &HubId, commit: &str) -> PathBuf {
        self.repo_dir(id).join("snapshots").join(commit)
    }

    /// `refs/<revision>` holds the commit a branch or tag pointed at when last resolved, so
    /// that offline use (here or in Python) finds the snapshot.
    /// hf-hub also writes `refs/<commit>` when downloading by commit; Python never does, so
    /// that file is removed.
    pub(crate) fn write_ref(&self, id: &HubId, commit: &str) -> Result<()> {
        let refs = self.repo_dir(id).join("refs");
        std::fs::remove_file(refs.join(commit)).ok();
        if id.revision == commit {
            return Ok(());
        }
        let path = refs.join(&id.revision);
        if std::fs::read_to_string(&path).is_ok_and(|c| c.trim() == commit) {
            return Ok(());
        }
        std::fs::create_dir_all(path.parent().expect("refs/<revision> has a parent"))
            .map_err(io(&path))?;
        std::fs::write(&path, commit).map_err(io(&path))
    }

    /// The commit `id` resolves to without the network: a full sha names its own snapshot;
    /// a branch or tag is looked up in `refs/`.
    pub(crate) fn cached_commit(&self, id: &HubId) -> Result<String> {
        let rev = &id.revision;
        if rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit()) {
            return match self.snapshot_dir(id, rev).is_dir() {
                true => Ok(rev.clone()),
                false => Err(self.offline_miss(id, "config.json")),
            };
        }
        let path = self.repo_dir(id).join("refs").join(rev);
        match std::fs::read_to_string(&path) {
            Ok(c) => Ok(c.trim().to_string()),
            Err(_) => Err(self.offline_miss(id, "config.json")),
        }
    }

    /// A complete model snapshot from the cache alone.
    fn cached_model(&self, id: &HubId) -> Result<PathBuf> {
        let snapshot = self.snapshot_dir(id, &self.cached_commit(id)?);
        let have = |f: &str| snapshot.join(f).is_file();
        let mut needed = vec!["config.json".to_string()];
        if have(INDEX) {
            needed.extend(shards(&snapshot.join(INDEX))?);
        } else {
            needed.push(SINGLE.into());
        }
        match needed.into_iter().find(|f| !have(f)) {
            Some(missing) => Err(self.offline_miss(id, &missing)),
            None => Ok(snapshot),
        }
    }

    pub(crate) fn offline_miss(&self, id: &HubId, file: &str) -> HubError {
        HubError::OfflineMiss {
            repo: id.repo.clone(),
            revision: id.revision.clone(),
            file: file.into(),
            cache: self.cache_dir.clone(),
        }
    }
}

fn repo_type(kind: RepoKind) -> RepoType {
    match kind {
        RepoKind::Model => RepoType::Model,
        RepoKind::Dataset => RepoType::Dataset,
    }
}

/// The shard files a safetensors index maps tensors to, each once, sorted.
fn shards(index: &Path) -> Result<BTreeSet<String>> {
    #[derive(Deserialize)]
    struct Index {
        weight_map: HashMap<String, String>,
    }
    let text = std::fs::read(index).map_err(io(index))?;
    let parsed: Index = serde_json::from_slice(&text).map_err(|e| HubError::Repo {
        repo: index.display().to_string(),
        why: format!("not a safetensors index: {e}"),
    })?;
    let shards: BTreeSet<String> = parsed.weight_map.into_values().collect();
    if let Some(bad) = shards
        .iter()
        .find(|s| s.contains("..") || s.starts_with('/'))
    {
        return Err(HubError::Repo {
            repo: index.display().to_string(),
            why: format!("shard name {bad:?} leaves the model folder"),
        });
    }
    Ok(shards)
}

/// Hex sha256 of a file (the Hub's LFS object id).
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io(path))?;
    Ok(hex(&hasher.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
