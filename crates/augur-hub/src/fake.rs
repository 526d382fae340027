//! A fake Hub for tests (feature `fake-hub`): an in-process HTTP server on 127.0.0.1 that
//! speaks the subset of the Hub API that downloads and pushes use: revision info, file
//! resolve (LFS files through a redirect to a separate "CDN" port, like the real Hub), ranged
//! reads, repo and branch creation, preupload, the git-LFS batch API and the commit endpoint.
//! It can cut a transfer mid-file, send a short body, answer 503, and go down and come back.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::download::hex;

/// How [`FakeHub::cut_transfer`] damages a file body served from the CDN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Send this many bytes, then drop the connection (the declared length stays full).
    Drop(usize),
    /// Send this many bytes with a `Content-Length` that matches them (a server bug or a
    /// proxy that truncates): the client sees a well-formed but short answer.
    Short(usize),
}

/// A file's content and its sha256, hashed once when committed.
#[derive(Clone)]
struct Blob {
    bytes: Bytes,
    sha256: String,
}

impl Blob {
    fn new(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        let sha256 = sha256(&bytes);
        Self { bytes, sha256 }
    }
}

#[derive(Default)]
struct Repo {
    private: bool,
    /// Branch or tag → commit.
    refs: BTreeMap<String, String>,
    /// Commit → files.
    commits: HashMap<String, BTreeMap<String, Blob>>,
}

#[derive(Default)]
struct Inner {
    token: Option<String>,
    repos: BTreeMap<String, Repo>,
    /// LFS objects by sha256.
    lfs: HashMap<String, Bytes>,
    /// (CDN bodies still to serve whole, then the damage).
    cut: Option<(usize, Cut)>,
    /// (path substring, remaining 503 answers).
    fail: Vec<(String, usize)>,
    log: Vec<String>,
    url: String,
    cdn_url: String,
}

type Shared = Arc<Mutex<Inner>>;

/// The server; stops when dropped.
pub struct FakeHub {
    state: Shared,
    runtime: tokio::runtime::Runtime,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    ports: [u16; 2],
}

impl FakeHub {
    /// Starts on two free ports of 127.0.0.1 (API and CDN).
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("test runtime");
        let state = Shared::default();
        let mut hub = Self {
            state,
            runtime,
            tasks: Vec::new(),
            ports: [0, 0],
        };
        hub.serve();
        let [api, cdn] = hub.ports;
        let mut s = hub.lock();
        s.url = format!("http://127.0.0.1:{api}");
        s.cdn_url = format!("http://127.0.0.1:{cdn}");
        drop(s);
        hub
    }

    fn serve(&mut self) {
        for i in 0..2 {
            let port = self.ports[i];
            let listener = self
                .runtime
                .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
                .expect("bind 127.0.0.1");
            self.ports[i] = listener.local_addr().expect("bound").port();
            let app = Router::new()
                .fallback(handle)
                .with_state(self.state.clone());
            self.tasks.push(self.runtime.spawn(async move {
                axum::serve(listener, app).await.ok();
            }));
        }
    }

    /// Refuses connections from now on (the server went down).
    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
            self.runtime.block_on(t).ok();
        }
    }

    /// Listens again on the same ports.
    pub fn restart(&mut self) {
        self.stop();
        self.serve();
    }

    /// The endpoint to give clients (`HF_ENDPOINT`).
    pub fn url(&self) -> String {
        self.lock().url.clone()
    }

    /// Points `cmd` (a process that talks to the Hub, e.g. the `augur` binary) at this server
    /// with `hf_home` as its `HF_HOME`, and removes the caller's own `HF_TOKEN`,
    /// `HF_HUB_OFFLINE` and `HF_HUB_CACHE` so the test sees only what it sets.
    pub fn environment<'c>(
        &self,
        cmd: &'c mut std::process::Command,
        hf_home: &std::path::Path,
    ) -> &'c mut std::process::Command {
        cmd.env("HF_ENDPOINT", self.url()).env("HF_HOME", hf_home);
        for k in ["HF_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_CACHE"] {
            cmd.env_remove(k);
        }
        cmd
    }

    /// The one token the server accepts; without it the server takes every request as
    /// anonymous-or-invalid.
    pub fn set_token(&self, token: &str) {
        self.lock().token = Some(token.into());
    }

    /// Creates `repo` with `files` committed on `main`; returns the commit.
    pub fn add_repo(&self, repo: &str, private: bool, files: &[(&str, Vec<u8>)]) -> String {
        let mut s = self.lock();
        s.repos.insert(
            repo.into(),
            Repo {
                private,
                ..Repo::default()
            },
        );
        commit_files(&mut s, repo, "main", files)
    }

    /// Creates dataset repo `repo` (public) with `files` committed on `main`; returns the commit.
    /// Dataset repos live apart from model repos (`datasets/org/name` in URLs), as on the Hub.
    pub fn add_dataset(&self, repo: &str, files: &[(&str, Vec<u8>)]) -> String {
        self.add_repo(&format!("datasets/{repo}"), false, files)
    }

    /// Commits `files` on `branch` (created from `main` if missing) over its current files.
    pub fn commit(&self, repo: &str, branch: &str, files: &[(&str, Vec<u8>)]) -> String {
        let mut s = self.lock();
        let r = s.repos.get_mut(repo).expect("repo exists");
        if !r.refs.contains_key(branch) {
            let main = r.refs["main"].clone();
            r.refs.insert(branch.into(), main);
        }
        commit_files(&mut s, repo, branch, files)
    }

    /// Points tag (or branch) `name` at `commit`.
    pub fn tag(&self, repo: &str, name: &str, commit: &str) {
        let mut s = self.lock();
        let r = s.repos.get_mut(repo).expect("repo exists");
        r.refs.insert(name.into(), commit.into());
    }

    /// A file of `repo` at `revision`, as last committed.
    pub fn file(&self, repo: &str, revision: &str, path: &str) -> Option<Vec<u8>> {
        let s = self.lock();
        let r = s.repos.get(repo)?;
        let commit = r.refs.get(revision)?;
        Some(r.commits.get(commit)?.get(path)?.bytes.to_vec())
    }

    pub fn is_private(&self, repo: &str) -> Option<bool> {
        self.lock().repos.get(repo).map(|r| r.private)
    }

    /// Serves `skip` more CDN file bodies whole (range probes not counted), then damages the
    /// next one, once.
    pub fn cut_transfer(&self, skip: usize, cut: Cut) {
        self.lock().cut = Some((skip, cut));
    }

    /// Answers 503 to the next `times` requests whose path contains `path_part`.
    pub fn fail_next(&self, path_part: &str, times: usize) {
        self.lock().fail.push((path_part.into(), times));
    }

    /// Requests served so far, as `METHOD path [range]`.
    pub fn log(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().expect("fake hub state")
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_lfs(path: &str, size: usize) -> bool {
    path.ends_with(".safetensors") || path.ends_with(".parquet") || size > 10_000_000
}

fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn commit_files(s: &mut Inner, repo: &str, branch: &str, files: &[(&str, Vec<u8>)]) -> String {
    let blobs = files
        .iter()
        .map(|(p, b)| (p.to_string(), Blob::new(b.clone())))
        .collect();
    commit_blobs(s, repo, branch, blobs)
}

fn commit_blobs(s: &mut Inner, repo: &str, branch: &str, files: Vec<(String, Blob)>) -> String {
    let r = s.repos.get_mut(repo).expect("repo exists");
    let parent = r.refs.get(branch).cloned().unwrap_or_default();
    let mut tree = r.commits.get(&parent).cloned().unwrap_or_default();
    tree.extend(files);
    let mut h = Sha256::new();
    h.update(parent.as_bytes());
    for (path, blob) in &tree {
        h.update(path.as_bytes());
        h.update(blob.sha256.as_bytes());
    }
    let commit = hex(&h.finalize())[..40].to_string();
    r.commits.insert(commit.clone(), tree.clone());
    r.refs.insert(branch.into(), commit.clone());
    for (path, blob) in tree {
        if is_lfs(&path, blob.bytes.len()) {
            s.lfs.insert(blob.sha256, blob.bytes);
        }
    }
    commit
}

enum Auth {
    Anonymous,
    Valid,
    Invalid,
}

fn auth(s: &Inner, headers: &HeaderMap) -> Auth {
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        None => Auth::Anonymous,
        Some(v) if s.token.as_ref().is_some_and(|t| v == format!("Bearer {t}")) => Auth::Valid,
        Some(_) => Auth::Invalid,
    }
}

fn reply(status: StatusCode, headers: &[(&str, String)], body: impl Into<Body>) -> Response {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.body(body.into()).expect("valid response")
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    reply(
        status,
        &[
            ("x-error-code", code.into()),
            ("content-type", "application/json".into()),
        ],
        json!({ "error": message }).to_string(),
    )
}

/// The repo `repo` if the caller may read it; the Hub answers 401 for a missing or private
/// repo to anonymous callers (and to bad tokens), 404 for a missing one to good tokens.
fn readable<'a>(s: &'a Inner, repo: &str, headers: &HeaderMap) -> Result<&'a Repo, Response> {
    let a = auth(s, headers);
    match (s.repos.get(repo), a) {
        (Some(r), _) if !r.private => Ok(r),
        (Some(r), Auth::Valid) => Ok(r),
        (None, Auth::Valid) => Err(error(
            StatusCode::NOT_FOUND,
            "RepoNotFound",
            "Repository not found",
        )),
        _ => Err(error(
            StatusCode::UNAUTHORIZED,
            "RepoNotFound",
            "Invalid username or password.",
        )),
    }
}

fn commit_of(r: &Repo, rev: &str) -> Option<String> {
    r.refs
        .get(rev)
        .cloned()
        .or_else(|| r.commits.contains_key(rev).then(|| rev.to_string()))
}

async fn handle(State(state): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 30)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let range = parts
        .headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut s = state.lock().expect("fake hub state");
    s.log.push(format!(
        "{} {}{}",
        parts.method,
        path,
        range
            .as_deref()
            .map(|r| format!(" {r}"))
            .unwrap_or_default()
    ));
    if let Some(f) = s
        .fail
        .iter_mut()
        .find(|(p, n)| *n > 0 && path.contains(p.as_str()))
    {
        f.1 -= 1;
        return error(StatusCode::SERVICE_UNAVAILABLE, "", "try again");
    }
    route(
        &mut s,
        &parts.method,
        &path,
        &parts.headers,
        range.as_deref(),
        body,
    )
}

fn route(
    s: &mut Inner,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    range: Option<&str>,
    body: Bytes,
) -> Response {
    let decoded = path.replace("%2F", "/");
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), seg.as_slice()) {
        ("GET", ["api", "datasets", org, name, "revision", rev]) => revision_info(
            s,
            &format!("datasets/{org}/{name}"),
            &rev.replace("%2F", "/"),
            headers,
        ),
        ("GET" | "HEAD", ["datasets", org, name, "resolve", rev, file @ ..]) => resolve(
            s,
            &format!("datasets/{org}/{name}"),
            &rev.replace("%2F", "/"),
            &file.join("/"),
            headers,
            range,
        ),
        ("GET", ["api", "models", org, name, "revision", rev]) => revision_info(
            s,
            &format!("{org}/{name}"),
            &rev.replace("%2F", "/"),
            headers,
        ),
        ("GET" | "HEAD", [org, name, "resolve", rev, file @ ..]) => resolve(
            s,
            &format!("{org}/{name}"),
            &rev.replace("%2F", "/"),
            &file.join("/"),
            headers,
            range,
        ),
        ("GET", ["cdn", oid]) => match s.lfs.get(*oid).cloned() {
            Some(bytes) => serve_bytes(s, bytes, range, &[], true),
            None => error(StatusCode::NOT_FOUND, "", "no such object"),
        },
        ("POST", ["api", "repos", "create"]) => create_repo(s, headers, &body),
        ("POST", ["api", "models", org, name, "branch", branch]) => create_branch(
            s,
            &format!("{org}/{name}"),
            &branch.replace("%2F", "/"),
            headers,
        ),
        ("POST", ["api", "models", _, _, "preupload", _]) => preupload(&body),
        ("POST", [org, name, "info", "lfs", "objects", "batch"]) => {
            let repo = format!("{org}/{}", name.trim_end_matches(".git"));
            lfs_batch(s, &repo, headers, &body)
        }
        ("PUT", ["lfs", oid]) => lfs_put(s, oid, headers, &body),
        ("POST", ["lfs-verify"]) => {
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            match v["oid"].as_str().is_some_and(|o| s.lfs.contains_key(o)) {
                true => reply(StatusCode::OK, &[], ""),
                false => error(StatusCode::NOT_FOUND, "", "object not uploaded"),
            }
        }
        ("POST", ["api", "models", org, name, "commit", rev]) => commit(
            s,
            &format!("{org}/{name}"),
            &rev.replace("%2F", "/"),
            headers,
            &body,
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "",
            &format!("no route for {method} {decoded}"),
        ),
    }
}

fn revision_info(s: &Inner, repo: &str, rev: &str, headers: &HeaderMap) -> Response {
    let r = match readable(s, repo, headers) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let Some(commit) = commit_of(r, rev) else {
        return error(StatusCode::NOT_FOUND, "RevisionNotFound", "Invalid rev id");
    };
    let siblings: Vec<Value> = r.commits[&commit]
        .iter()
        .map(|(path, blob)| {
            let size = blob.bytes.len();
            let mut v = json!({"rfilename": path, "size": size, "blobId": &blob.sha256[..40]});
            if is_lfs(path, size) {
                v["lfs"] = json!({"sha256": blob.sha256, "size": size, "pointerSize": 134});
            }
            v
        })
        .collect();
    let info = json!({"id": repo, "sha": commit, "private": r.private, "siblings": siblings});
    reply(
        StatusCode::OK,
        &[("content-type", "application/json".into())],
        info.to_string(),
    )
}

fn resolve(
    s: &mut Inner,
    repo: &str,
    rev: &str,
    file: &str,
    headers: &HeaderMap,
    range: Option<&str>,
) -> Response {
    let r = match readable(s, repo, headers) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let Some(commit) = commit_of(r, rev) else {
        return error(StatusCode::NOT_FOUND, "RevisionNotFound", "Invalid rev id");
    };
    let Some(Blob { bytes, sha256: oid }) = r.commits[&commit].get(file).cloned() else {
        return error(StatusCode::NOT_FOUND, "EntryNotFound", "Entry not found");
    };
    if is_lfs(file, bytes.len()) {
        let location = format!("{}/cdn/{oid}", s.cdn_url);
        return reply(
            StatusCode::FOUND,
            &[
                ("location", location),
                ("x-repo-commit", commit),
                ("x-linked-etag", format!("\"{oid}\"")),
                ("x-linked-size", bytes.len().to_string()),
                ("etag", format!("\"{}\"", &oid[..40])),
            ],
            "",
        );
    }
    let meta = [
        ("x-repo-commit", commit),
        ("etag", format!("\"{}\"", &oid[..40])),
    ];
    serve_bytes(s, bytes, range, &meta, false)
}

/// A whole or ranged (`bytes=a-b`, `b` clamped) answer; CDN bodies may be cut.
fn serve_bytes(
    s: &mut Inner,
    bytes: Bytes,
    range: Option<&str>,
    meta: &[(&str, String)],
    cdn: bool,
) -> Response {
    let len = bytes.len();
    let bounds = range.and_then(|r| {
        let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
        let a: usize = a.parse().ok()?;
        let b: usize = b
            .parse()
            .unwrap_or(len.saturating_sub(1))
            .min(len.saturating_sub(1));
        Some((a, b))
    });
    let (status, body, mut headers) = match bounds {
        Some((a, b)) if a < len => (
            StatusCode::PARTIAL_CONTENT,
            bytes.slice(a..=b),
            vec![("content-range", format!("bytes {a}-{b}/{len}"))],
        ),
        Some(_) => {
            return reply(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &[("content-range", format!("bytes */{len}"))],
                "",
            )
        }
        None => (StatusCode::OK, bytes, vec![]),
    };
    headers.extend(meta.iter().cloned());
    let probe = range == Some("bytes=0-0");
    let n = body.len();
    let cut = match s.cut.take() {
        Some((0, cut)) if cdn && !probe => Some(cut),
        Some((skip, cut)) => {
            let counts = cdn && !probe;
            s.cut = Some((skip - usize::from(counts), cut));
            None
        }
        None => None,
    };
    match cut {
        Some(Cut::Drop(keep)) if keep < n => {
            headers.push(("content-length", n.to_string()));
            let head = body.slice(..keep);
            let stream = futures::stream::iter(vec![
                Ok(head),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "cut",
                )),
            ]);
            reply(status, &headers, Body::from_stream(stream))
        }
        Some(Cut::Short(keep)) if keep < n => reply(status, &headers, body.slice(..keep)),
        _ => reply(status, &headers, body),
    }
}

fn create_repo(s: &mut Inner, headers: &HeaderMap, body: &[u8]) -> Response {
    if !matches!(auth(s, headers), Auth::Valid) {
        return error(
            StatusCode::UNAUTHORIZED,
            "",
            "Invalid username or password.",
        );
    }
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    let (Some(org), Some(name)) = (v["organization"].as_str(), v["name"].as_str()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "",
            "name and organization are required",
        );
    };
    let repo = format!("{org}/{name}");
    if s.repos.contains_key(&repo) {
        return error(
            StatusCode::CONFLICT,
            "",
            "You already created this model repo",
        );
    }
    let private = v["private"].as_bool().unwrap_or(false);
    s.repos.insert(
        repo.clone(),
        Repo {
            private,
            ..Repo::default()
        },
    );
    commit_files(
        s,
        &repo,
        "main",
        &[(
            ".gitattributes",
            b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n".to_vec(),
        )],
    );
    let url = format!("{}/{repo}", s.url);
    reply(StatusCode::OK, &[], json!({ "url": url }).to_string())
}

fn create_branch(s: &mut Inner, repo: &str, branch: &str, headers: &HeaderMap) -> Response {
    if !matches!(auth(s, headers), Auth::Valid) {
        return error(
            StatusCode::UNAUTHORIZED,
            "",
            "Invalid username or password.",
        );
    }
    let Some(r) = s.repos.get_mut(repo) else {
        return error(
            StatusCode::NOT_FOUND,
            "RepoNotFound",
            "Repository not found",
        );
    };
    if r.refs.contains_key(branch) {
        return error(StatusCode::CONFLICT, "", "Reference already exists");
    }
    let main = r.refs["main"].clone();
    r.refs.insert(branch.into(), main);
    reply(StatusCode::OK, &[], "{}")
}

fn preupload(body: &[u8]) -> Response {
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    let files: Vec<Value> = v["files"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap_or_default();
            let size = f["size"].as_u64().unwrap_or(0) as usize;
            let mode = if is_lfs(path, size) { "lfs" } else { "regular" };
            json!({"path": path, "uploadMode": mode, "shouldIgnore": false})
        })
        .collect();
    reply(StatusCode::OK, &[], json!({ "files": files }).to_string())
}

fn lfs_batch(s: &Inner, repo: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    if !matches!(auth(s, headers), Auth::Valid) || !s.repos.contains_key(repo) {
        return error(
            StatusCode::UNAUTHORIZED,
            "",
            "Invalid username or password.",
        );
    }
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    let objects: Vec<Value> = v["objects"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|o| {
            let oid = o["oid"].as_str().unwrap_or_default().to_string();
            match s.lfs.contains_key(&oid) {
                true => json!({"oid": oid, "size": o["size"]}),
                false => json!({"oid": oid, "size": o["size"], "actions": {
                    "upload": {"href": format!("{}/lfs/{oid}", s.cdn_url), "header": {"x-signature": "ok"}},
                    "verify": {"href": format!("{}/lfs-verify", s.url), "header": {}}}}),
            }
        })
        .collect();
    reply(
        StatusCode::OK,
        &[],
        json!({"transfer": "basic", "objects": objects}).to_string(),
    )
}

/// A pre-signed upload URL: refuses a token (S3 would) and checks the content's sha256.
fn lfs_put(s: &mut Inner, oid: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    if headers.contains_key("authorization") || !headers.contains_key("x-signature") {
        return error(
            StatusCode::BAD_REQUEST,
            "",
            "pre-signed URL: send the signature header and no token",
        );
    }
    if sha256(body) != oid {
        return error(
            StatusCode::BAD_REQUEST,
            "",
            "content does not match the oid",
        );
    }
    s.lfs.insert(oid.into(), Bytes::copy_from_slice(body));
    reply(StatusCode::OK, &[], "")
}

fn commit(s: &mut Inner, repo: &str, rev: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    match auth(s, headers) {
        Auth::Valid => {}
        _ => {
            return error(
                StatusCode::UNAUTHORIZED,
                "",
                "Invalid username or password.",
            )
        }
    }
    let Some(r) = s.repos.get(repo) else {
        return error(
            StatusCode::NOT_FOUND,
            "RepoNotFound",
            "Repository not found",
        );
    };
    if !r.refs.contains_key(rev) {
        return error(StatusCode::NOT_FOUND, "RevisionNotFound", "Invalid rev id");
    }
    let mut files = Vec::new();
    for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            return error(StatusCode::BAD_REQUEST, "", "bad NDJSON line");
        };
        let value = &v["value"];
        let path = value["path"].as_str().unwrap_or_default().to_string();
        match v["key"].as_str() {
            Some("header") => {}
            Some("file") => match B64.decode(value["content"].as_str().unwrap_or_default()) {
                Ok(bytes) if value["encoding"] == "base64" => files.push((path, Blob::new(bytes))),
                _ => return error(StatusCode::BAD_REQUEST, "", "bad base64 content"),
            },
            Some("lfsFile") => match value["oid"].as_str().and_then(|o| Some((o, s.lfs.get(o)?))) {
                Some((oid, bytes)) => files.push((
                    path,
                    Blob {
                        bytes: bytes.clone(),
                        sha256: oid.into(),
                    },
                )),
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "",
                        &format!("LFS object of {path} not uploaded"),
                    )
                }
            },
            _ => return error(StatusCode::BAD_REQUEST, "", "unknown NDJSON key"),
        }
    }
    let oid = commit_blobs(s, repo, rev, files);
    let url = format!("{}/{repo}/commit/{oid}", s.url);
    reply(
        StatusCode::OK,
        &[],
        json!({"commitOid": oid, "commitUrl": url}).to_string(),
    )
}

/// The tiny Llama of the repository's `tests/fixtures` (`parity/llama`) with the char
/// tokenizer, as the files of a Hub model repo: what the Hub tests of every crate serve.
pub fn tiny_model_files() -> Vec<(&'static str, Vec<u8>)> {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let llama = fixtures.join("parity/llama");
    let read = |p: std::path::PathBuf| {
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    vec![
        ("config.json", read(llama.join("config.json"))),
        (
            "generation_config.json",
            read(llama.join("generation_config.json")),
        ),
        (
            "tokenizer.json",
            read(fixtures.join("char-tokenizer/tokenizer.json")),
        ),
        ("model.safetensors", read(llama.join("model.safetensors"))),
    ]
}
