//! Pushing a folder (an augur checkpoint) to a model repo through the Hub's HTTP API: create
//! the repo (and branch) if missing, ask which files go to LFS (`preupload`), upload those
//! through the git-LFS batch API, then one commit (NDJSON) that adds small files inline and
//! references the LFS objects.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::card::model_card;
use crate::download::hex;
use crate::error::{io, HubError, Result};
use crate::hub::{error_chain, url_revision, Hub, Target};
use crate::id::HubId;

/// How to push.
#[derive(Clone, Debug)]
pub struct PushOptions {
    /// Create the repo private (an existing repo keeps its visibility).
    pub private: bool,
    /// Branch to commit to; created from `main` when missing.
    pub revision: String,
    /// Folder inside the repo; empty for its root.
    pub path_in_repo: String,
    /// Commit title.
    pub message: String,
}

/// What a push did.
#[derive(Clone, Debug)]
pub struct PushSummary {
    pub commit_oid: String,
    pub commit_url: String,
    pub files: usize,
    pub lfs_files: usize,
    pub bytes: u64,
}

/// One file to commit.
struct Upload {
    path_in_repo: String,
    bytes: Vec<u8>,
    sha256: String,
}

const LFS_JSON: &str = "application/vnd.git-lfs+json";

impl Hub {
    /// Pushes every file of `folder` (dotfiles and `*.tmp` left out) to `repo` in one commit,
    /// with a model card `README.md` written from the checkpoint unless the folder has one.
    pub fn push_folder(
        &self,
        folder: &Path,
        repo: &str,
        opts: &PushOptions,
    ) -> Result<PushSummary> {
        let id = HubId::parse(repo)?;
        if id.revision != "main" {
            return Err(HubError::BadId {
                spec: repo.into(),
                why: "give the branch with --revision, not '@'",
            });
        }
        if self.token.is_none() {
            return Err(HubError::NoToken { repo: repo.into() });
        }
        if self.offline {
            return Err(HubError::Repo {
                repo: repo.into(),
                why: "HF_HUB_OFFLINE=1 forbids pushing".into(),
            });
        }
        let prefix = match opts.path_in_repo.trim_matches('/') {
            "" => String::new(),
            p => format!("{p}/"),
        };
        let mut uploads = Vec::new();
        for path in files_in(folder)? {
            let rel = path.strip_prefix(folder).expect("listed under folder");
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            uploads.push(Upload::new(
                format!("{prefix}{}", rel.to_string_lossy()),
                bytes,
            ));
        }
        if uploads.is_empty() {
            return Err(HubError::Io {
                path: folder.into(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no files to push"),
            });
        }
        let card = format!("{prefix}README.md");
        if !uploads.iter().any(|u| u.path_in_repo == card) {
            uploads.push(Upload::new(card, model_card(folder, repo)?.into_bytes()));
        }
        self.block_on(self.push_async(repo, opts, uploads))
    }

    async fn push_async(
        &self,
        repo: &str,
        opts: &PushOptions,
        uploads: Vec<Upload>,
    ) -> Result<PushSummary> {
        let client = self.client()?;
        let rev = opts.revision.as_str();
        let at = |what: &str| Target {
            repo,
            revision: rev,
            file: None,
            what: what.into(),
            write: true,
        };
        let api = format!("{}/api/models/{repo}", self.endpoint);

        // The repo, then the branch: "already exists" (409) is fine for both.
        let (org, name) = repo.split_once('/').expect("a parsed id has one '/'");
        let body = json!({"name": name, "organization": org, "private": opts.private});
        let url = format!("{}/api/repos/create", self.endpoint);
        self.send_allowing_conflict(&at("creating the repo"), || client.post(&url).json(&body))
            .await?;
        if rev != "main" {
            let url = format!("{api}/branch/{}", url_revision(rev));
            self.send_allowing_conflict(&at("creating the branch"), || {
                client.post(&url).json(&json!({}))
            })
            .await?;
        }

        // Which files the Hub wants in LFS.
        let files: Vec<Value> = uploads
            .iter()
            .map(|u| {
                let sample = &u.bytes[..u.bytes.len().min(512)];
                json!({"path": u.path_in_repo, "sample": B64.encode(sample), "size": u.bytes.len()})
            })
            .collect();
        let url = format!("{api}/preupload/{}", url_revision(rev));
        let body = json!({ "files": files });
        let modes: Preupload = self
            .send(&at("preupload"), || client.post(&url).json(&body))
            .await?
            .json()
            .await
            .map_err(|e| unreadable(repo, "preupload", &e))?;
        let is_lfs = |u: &Upload| {
            modes
                .files
                .iter()
                .any(|f| f.path == u.path_in_repo && f.upload_mode == "lfs")
        };
        let lfs: Vec<&Upload> = uploads.iter().filter(|u| is_lfs(u)).collect();
        if !lfs.is_empty() {
            self.upload_lfs(&client, repo, rev, &lfs).await?;
        }

        // One commit: small files inline (base64), LFS files by object id.
        let mut lines =
            vec![json!({"key": "header", "value": {"summary": opts.message, "description": ""}})];
        for u in &uploads {
            lines.push(match is_lfs(u) {
                true => json!({"key": "lfsFile", "value": {"path": u.path_in_repo, "algo": "sha256", "oid": u.sha256}}),
                false => json!({"key": "file", "value": {"path": u.path_in_repo, "content": B64.encode(&u.bytes), "encoding": "base64"}}),
            });
        }
        let ndjson: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let url = format!("{api}/commit/{}", url_revision(rev));
        let commit: Commit = self
            .send(&at("the commit"), || {
                client
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                    .body(ndjson.clone())
            })
            .await?
            .json()
            .await
            .map_err(|e| unreadable(repo, "commit", &e))?;
        Ok(PushSummary {
            commit_oid: commit.commit_oid,
            commit_url: commit.commit_url,
            files: uploads.len(),
            lfs_files: lfs.len(),
            bytes: uploads.iter().map(|u| u.bytes.len() as u64).sum(),
        })
    }

    /// git-LFS batch API, "basic" transfer: the Hub answers with an upload URL for each object
    /// it lacks (and a verify URL), nothing for objects it already has.
    async fn upload_lfs(
        &self,
        client: &reqwest::Client,
        repo: &str,
        rev: &str,
        lfs: &[&Upload],
    ) -> Result<()> {
        let objects: Vec<Value> = lfs
            .iter()
            .map(|u| json!({"oid": u.sha256, "size": u.bytes.len()}))
            .collect();
        let body = json!({"operation": "upload", "transfers": ["basic"], "objects": objects,
                          "hash_algo": "sha256", "ref": {"name": rev}});
        let url = format!("{}/{repo}.git/info/lfs/objects/batch", self.endpoint);
        let at = |what: String| Target {
            repo,
            revision: rev,
            file: None,
            what,
            write: true,
        };
        let batch: LfsBatch = self
            .send(&at("LFS batch".into()), || {
                client
                    .post(&url)
                    .header(reqwest::header::ACCEPT, LFS_JSON)
                    .header(reqwest::header::CONTENT_TYPE, LFS_JSON)
                    .json(&body)
            })
            .await?
            .json()
            .await
            .map_err(|e| unreadable(repo, "LFS batch", &e))?;
        // Upload URLs are pre-signed: the token must not travel with them.
        let anonymous = self.clone().with_token(None).client()?;
        for object in batch.objects {
            let upload =
                lfs.iter()
                    .find(|u| u.sha256 == object.oid)
                    .ok_or_else(|| HubError::Repo {
                        repo: repo.into(),
                        why: format!("the LFS batch answered for unknown object {}", object.oid),
                    })?;
            let file = upload.path_in_repo.as_str();
            if let Some(e) = object.error {
                return Err(HubError::Repo {
                    repo: repo.into(),
                    why: format!("LFS refused {file}: {} {}", e.code, e.message),
                });
            }
            let Some(actions) = object.actions else {
                continue; // already stored
            };
            if let Some(up) = actions.upload {
                if up.header.contains_key("chunk_size") {
                    return Err(HubError::Repo {
                        repo: repo.into(),
                        why: format!("the Hub asks for a multipart upload of {file} ({} bytes), which augur push does not do", upload.bytes.len()),
                    });
                }
                self.send(&at(format!("uploading {file}")), || {
                    with_headers(anonymous.put(&up.href), &up.header).body(upload.bytes.clone())
                })
                .await?;
            }
            if let Some(verify) = actions.verify {
                let body = json!({"oid": upload.sha256, "size": upload.bytes.len()});
                self.send(&at(format!("verifying {file}")), || {
                    with_headers(client.post(&verify.href), &verify.header).json(&body)
                })
                .await?;
            }
        }
        Ok(())
    }

    async fn send_allowing_conflict(
        &self,
        at: &Target<'_>,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<()> {
        match self.send(at, build).await {
            Err(HubError::Http { status, .. }) if status == StatusCode::CONFLICT.as_u16() => Ok(()),
            r => r.map(drop),
        }
    }
}

impl Upload {
    fn new(path_in_repo: String, bytes: Vec<u8>) -> Self {
        let sha256 = hex(&Sha256::digest(&bytes));
        Self {
            path_in_repo,
            bytes,
            sha256,
        }
    }
}

fn with_headers(
    mut req: reqwest::RequestBuilder,
    headers: &std::collections::HashMap<String, String>,
) -> reqwest::RequestBuilder {
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req
}

fn unreadable(repo: &str, what: &str, e: &reqwest::Error) -> HubError {
    HubError::Repo {
        repo: repo.into(),
        why: format!("unreadable {what} answer: {}", error_chain(e)),
    }
}

/// Files under `dir`, recursively and sorted, without dotfiles and `*.tmp` (unfinished atomic writes).
fn files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<std::io::Result<_>>()
        .map_err(io(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name.ends_with(".tmp") {
            continue;
        }
        let path = entry.path();
        match path.is_dir() {
            true => out.extend(files_in(&path)?),
            false => out.push(path),
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct Preupload {
    files: Vec<PreuploadFile>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PreuploadFile {
    path: String,
    upload_mode: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Commit {
    commit_oid: String,
    commit_url: String,
}

#[derive(Deserialize)]
struct LfsBatch {
    objects: Vec<LfsObject>,
}

#[derive(Deserialize)]
struct LfsObject {
    oid: String,
    actions: Option<LfsActions>,
    error: Option<LfsError>,
}

#[derive(Deserialize)]
struct LfsActions {
    upload: Option<LfsAction>,
    verify: Option<LfsAction>,
}

#[derive(Deserialize)]
struct LfsAction {
    href: String,
    #[serde(default)]
    header: std::collections::HashMap<String, String>,
}

#[derive(Deserialize)]
struct LfsError {
    code: i64,
    message: String,
}
