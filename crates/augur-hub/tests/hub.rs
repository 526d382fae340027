//! Downloads and pushes against the in-process fake Hub (`augur_hub::fake`): the tiny Llama
//! fixture of tests/fixtures as a model repo, sharded and unsharded, at several revisions,
//! public and private, with transfers cut mid-file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use augur_hub::fake::{tiny_model_files, Cut, FakeHub};
use augur_hub::{Hub, HubError, HubFolder, HubId, PushOptions};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The tiny Llama as an HF repo, plus files a model download must leave alone.
fn tiny_model() -> Vec<(&'static str, Vec<u8>)> {
    let llama = fixtures().join("parity/llama");
    let mut files = tiny_model_files();
    files.push((
        "expected.safetensors",
        read(&llama.join("expected.safetensors")),
    ));
    files.push(("README.md", b"# tiny\n".to_vec()));
    files
}

/// The tiny Llama's weights split into two shards with an index (and a stale third shard
/// that the index does not name).
fn sharded_model() -> Vec<(&'static str, Vec<u8>)> {
    let bytes = read(&fixtures().join("parity/llama/model.safetensors"));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort();
    let (first, second) = names.split_at(names.len() / 2);
    let mut weight_map = BTreeMap::new();
    let mut shard = |file: &'static str, part: &[&str]| {
        let views: Vec<(String, safetensors::tensor::TensorView)> = part
            .iter()
            .map(|n| (n.to_string(), st.tensor(n).unwrap()))
            .collect();
        for n in part {
            weight_map.insert(n.to_string(), file);
        }
        (file, safetensors::serialize(views, None).unwrap())
    };
    let shards = [
        shard("model-00001-of-00002.safetensors", first),
        shard("model-00002-of-00002.safetensors", second),
    ];
    let index =
        serde_json::json!({"metadata": {"total_size": bytes.len()}, "weight_map": weight_map});
    let mut files: Vec<(&str, Vec<u8>)> = tiny_model()
        .into_iter()
        .filter(|(f, _)| *f != "model.safetensors")
        .collect();
    files.extend(shards);
    files.push((
        "model.safetensors.index.json",
        index.to_string().into_bytes(),
    ));
    files.push(("model-old.safetensors", vec![7; 1000]));
    files
}

fn client(hub: &FakeHub, cache: &Path) -> Hub {
    Hub::new(&hub.url(), cache.to_path_buf()).with_retries(0, Duration::from_millis(10))
}

fn id(s: &str) -> HubId {
    HubId::parse(s).unwrap()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn downloads_the_needed_files_then_reuses_the_cache_offline() {
    let mut hub = FakeHub::start();
    let commit = hub.add_repo("org/tiny", false, &tiny_model());
    let cache = tempfile::tempdir().unwrap();
    let api = client(&hub, cache.path());

    let dir = api.model_folder(&id("org/tiny")).unwrap();
    // The Python cache layout: snapshots/<commit>/<file> → ../../blobs/<etag>, refs/main.
    let repo_dir = cache.path().join("models--org--tiny");
    assert_eq!(dir, repo_dir.join("snapshots").join(&commit));
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        commit
    );
    assert_eq!(
        listing(&dir),
        [
            "config.json",
            "generation_config.json",
            "model.safetensors",
            "tokenizer.json"
        ]
    );
    for (name, bytes) in tiny_model().iter().filter(|(n, _)| dir.join(n).exists()) {
        assert_eq!(&read(&dir.join(name)), bytes, "{name}");
    }
    let link = std::fs::read_link(dir.join("model.safetensors")).unwrap();
    assert!(link.starts_with("../../blobs"), "{}", link.display());
    // Blobs are named by etag (the sha256 for LFS files), with nothing else beside them.
    let blobs = listing(&repo_dir.join("blobs"));
    assert_eq!(blobs.len(), 4, "{blobs:?}");
    assert!(blobs.iter().all(|b| !b.contains('.')), "{blobs:?}");

    // A second resolve downloads nothing: one revision request, no file requests.
    let before = hub.log().len();
    assert_eq!(api.model_folder(&id("org/tiny")).unwrap(), dir);
    let new: Vec<String> = hub.log()[before..].to_vec();
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(new[0].contains("/revision/main"), "{new:?}");

    // Offline: the cache answers, with the server down, by branch and by commit.
    hub.stop();
    let offline = client(&hub, cache.path()).with_offline(true);
    assert_eq!(offline.model_folder(&id("org/tiny")).unwrap(), dir);
    assert_eq!(
        offline
            .model_folder(&id(&format!("org/tiny@{commit}")))
            .unwrap(),
        dir
    );
    // Online but unreachable: falls back to the cache like huggingface_hub does.
    assert_eq!(api.model_folder(&id("org/tiny")).unwrap(), dir);
    // A revision never downloaded is an offline miss naming the repo, revision and file.
    let err = offline.model_folder(&id("org/tiny@v2")).unwrap_err();
    assert!(matches!(err, HubError::OfflineMiss { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("org/tiny@v2")
            && msg.contains("config.json")
            && msg.contains("HF_HUB_OFFLINE"),
        "{msg}"
    );
    // A cached snapshot missing its weights is a miss naming the weights file.
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let msg = offline
        .model_folder(&id("org/tiny"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("model.safetensors"), "{msg}");
}

#[test]
fn revisions_resolve_by_branch_tag_and_commit() {
    let hub = FakeHub::start();
    let v1 = hub.add_repo("org/tiny", false, &tiny_model());
    hub.tag("org/tiny", "v1.0", &v1);
    let v2 = hub.commit(
        "org/tiny",
        "main",
        &[("generation_config.json", b"{\"v\": 2}".to_vec())],
    );
    let dev = hub.commit(
        "org/tiny",
        "dev",
        &[("generation_config.json", b"{\"v\": 3}".to_vec())],
    );
    let cache = tempfile::tempdir().unwrap();
    let api = client(&hub, cache.path());
    let gen = |spec: &str| {
        let dir = api.model_folder(&id(spec)).unwrap();
        (
            dir.file_name().unwrap().to_string_lossy().into_owned(),
            read(&dir.join("generation_config.json")),
        )
    };
    let original = read(&fixtures().join("parity/llama/generation_config.json"));
    assert_eq!(gen("org/tiny@v1.0"), (v1.clone(), original.clone()));
    assert_eq!(gen("org/tiny"), (v2.clone(), b"{\"v\": 2}".to_vec()));
    assert_eq!(gen("org/tiny@dev"), (dev, b"{\"v\": 3}".to_vec()));
    assert_eq!(gen(&format!("org/tiny@{v1}")), (v1.clone(), original));
    // Each branch and tag has its ref; the weights blob is shared by all snapshots.
    let refs = cache.path().join("models--org--tiny/refs");
    assert_eq!(listing(&refs), ["dev", "main", "v1.0"]);
    assert_eq!(std::fs::read_to_string(refs.join("v1.0")).unwrap(), v1);
    let err = api.model_folder(&id("org/tiny@nope")).unwrap_err();
    assert!(matches!(err, HubError::RevisionNotFound { .. }), "{err}");
    assert!(err.to_string().contains("\"nope\""), "{err}");
}

#[test]
fn sharded_weights_follow_the_index() {
    let hub = FakeHub::start();
    hub.add_repo("org/sharded", false, &sharded_model());
    let cache = tempfile::tempdir().unwrap();
    let dir = client(&hub, cache.path())
        .model_folder(&id("org/sharded"))
        .unwrap();
    assert_eq!(
        listing(&dir),
        [
            "config.json",
            "generation_config.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "tokenizer.json"
        ]
    );
    for (name, bytes) in sharded_model().iter().filter(|(n, _)| dir.join(n).exists()) {
        assert_eq!(&read(&dir.join(name)), bytes, "{name}");
    }
    // Offline, the cached index names the shards to check.
    let offline = client(&hub, cache.path()).with_offline(true);
    assert_eq!(offline.model_folder(&id("org/sharded")).unwrap(), dir);
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    let msg = offline
        .model_folder(&id("org/sharded"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("model-00002-of-00002.safetensors"), "{msg}");
    // An index that names a shard the repo lacks is an error naming both.
    let mut broken = sharded_model();
    broken.retain(|(n, _)| *n != "model-00001-of-00002.safetensors");
    hub.add_repo("org/broken", false, &broken);
    let msg = client(&hub, cache.path())
        .model_folder(&id("org/broken"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("org/broken") && msg.contains("model-00001-of-00002.safetensors"),
        "{msg}"
    );
}

#[test]
fn missing_private_and_unauthorized_repos_name_the_repo() {
    let hub = FakeHub::start();
    hub.set_token("hf_good");
    hub.add_repo("org/secret", true, &tiny_model());
    hub.add_repo("org/nomodel", false, &[("README.md", b"hi".to_vec())]);
    let cache = tempfile::tempdir().unwrap();
    let anonymous = client(&hub, cache.path());
    // Anonymous: 401 for a private repo and for a missing one alike.
    for repo in ["org/secret", "org/missing"] {
        let err = anonymous.model_folder(&id(repo)).unwrap_err();
        assert!(matches!(err, HubError::Unauthorized { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(repo) && msg.contains("401") && msg.contains("HF_TOKEN"),
            "{msg}"
        );
    }
    let bad = client(&hub, cache.path()).with_token(Some("hf_bad".into()));
    let msg = bad.model_folder(&id("org/secret")).unwrap_err().to_string();
    assert!(msg.contains("does not grant access"), "{msg}");
    // With the right token: the private repo downloads, a missing one is a 404.
    let good = client(&hub, cache.path()).with_token(Some("hf_good".into()));
    assert!(good
        .model_folder(&id("org/secret"))
        .unwrap()
        .join("model.safetensors")
        .exists());
    let err = good.model_folder(&id("org/missing")).unwrap_err();
    assert!(matches!(err, HubError::RepoNotFound { .. }), "{err}");
    assert!(err.to_string().contains("org/missing"), "{err}");
    let msg = good
        .model_folder(&id("org/nomodel"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("org/nomodel") && msg.contains("config.json"),
        "{msg}"
    );
    // A checkpoint folder that does not exist names the folder.
    let msg = good
        .folder(&HubFolder::parse("org/secret/checkpoint-9").unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("org/secret") && msg.contains("checkpoint-9/"),
        "{msg}"
    );
}

/// Bytes served for `needle`'s first Range request after log entry `from`.
fn first_range_start(log: &[String], needle: &str) -> Option<usize> {
    log.iter()
        .filter(|l| l.contains(needle) && !l.ends_with("bytes=0-0"))
        .find_map(|l| l.split("bytes=").nth(1)?.split('-').next()?.parse().ok())
}

#[test]
fn a_transfer_cut_mid_file_resumes_from_the_finished_chunks() {
    let mut hub = FakeHub::start();
    hub.add_repo("org/tiny", false, &tiny_model());
    let weights = read(&fixtures().join("parity/llama/model.safetensors"));
    let cache = tempfile::tempdir().unwrap();
    let api = client(&hub, cache.path()).with_chunk_size(64 * 1024);

    // Two 64 KiB chunks arrive, the connection drops inside the third.
    hub.cut_transfer(2, Cut::Drop(10_000));
    let err = api.model_folder(&id("org/tiny")).unwrap_err();
    assert!(matches!(err, HubError::Transfer { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("org/tiny") && msg.contains("model.safetensors") && msg.contains("resumes"),
        "{msg}"
    );
    // The server is down now: the retry cannot start, and says why, naming the repo.
    hub.stop();
    let msg = api.model_folder(&id("org/tiny")).unwrap_err().to_string();
    assert!(
        msg.contains("org/tiny") && msg.contains("cannot reach"),
        "{msg}"
    );
    // Back up: the retry asks only for the bytes after the two finished chunks.
    hub.restart();
    let before = hub.log().len();
    let dir = api.model_folder(&id("org/tiny")).unwrap();
    assert_eq!(read(&dir.join("model.safetensors")), weights);
    assert_eq!(
        first_range_start(&hub.log()[before..], "/cdn/"),
        Some(2 * 64 * 1024)
    );
}

#[test]
fn a_short_body_is_caught_by_the_checksum_and_removed() {
    let hub = FakeHub::start();
    hub.add_repo("org/tiny", false, &tiny_model());
    let weights = read(&fixtures().join("parity/llama/model.safetensors"));
    let cache = tempfile::tempdir().unwrap();
    let api = client(&hub, cache.path());
    // A well-formed answer with too few bytes: hf-hub pads the file to its size, so only the
    // sha256 the Hub lists can tell.
    hub.cut_transfer(0, Cut::Short(1000));
    let err = api.model_folder(&id("org/tiny")).unwrap_err();
    assert!(matches!(err, HubError::Damaged { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("org/tiny") && msg.contains("model.safetensors") && msg.contains("sha256"),
        "{msg}"
    );
    let dir = api.model_folder(&id("org/tiny")).unwrap();
    assert_eq!(read(&dir.join("model.safetensors")), weights);
}

/// A checkpoint folder as `augur grpo` writes it, with the run's metrics.jsonl beside it.
fn checkpoint(run: &Path) -> PathBuf {
    let ck = run.join("checkpoint-2");
    std::fs::create_dir_all(&ck).unwrap();
    let adapter = serde_json::json!({"r": 4, "lora_alpha": 8.0, "target_modules": ["q_proj", "v_proj"],
        "base_model_name_or_path": "org/tiny", "peft_type": "LORA", "task_type": "CAUSAL_LM"});
    std::fs::write(ck.join("adapter_config.json"), adapter.to_string()).unwrap();
    let weights: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(ck.join("adapter_model.safetensors"), &weights).unwrap();
    std::fs::write(ck.join("optimizer.safetensors"), &weights[..1000]).unwrap();
    std::fs::write(
        ck.join("trainer_state.json"),
        "{\"step\": 2, \"data_cursor\": 6}",
    )
    .unwrap();
    std::fs::write(
        ck.join("config.toml"),
        "[model]\npath = \"/cache/x\"\nname = \"org/tiny\"\n[rollout]\ngroup_size = 8\n",
    )
    .unwrap();
    std::fs::write(ck.join("config.toml.tmp"), "unfinished").unwrap();
    std::fs::write(
        run.join("metrics.jsonl"),
        "{\"step\": 1, \"reward_mean\": 0.25}\n{\"step\": 2, \"reward_mean\": 0.5, \"loss\": -0.01}\n{\"step\": 3, \"reward_mean\": 0.75}\n",
    )
    .unwrap();
    ck
}

fn push_options(revision: &str, path_in_repo: &str) -> PushOptions {
    PushOptions {
        private: true,
        revision: revision.into(),
        path_in_repo: path_in_repo.into(),
        message: "augur checkpoint".into(),
    }
}

#[test]
fn push_creates_the_repo_uploads_through_lfs_and_round_trips() {
    let hub = FakeHub::start();
    hub.set_token("hf_write");
    let run = tempfile::tempdir().unwrap();
    let ck = checkpoint(run.path());
    let cache = tempfile::tempdir().unwrap();
    let api = client(&hub, cache.path())
        .with_token(Some("hf_write".into()))
        .with_retries(2, Duration::from_millis(10));

    let summary = api
        .push_folder(&ck, "org/run", &push_options("main", ""))
        .unwrap();
    assert_eq!(hub.is_private("org/run"), Some(true));
    assert_eq!((summary.files, summary.lfs_files), (6, 2), "{summary:?}");
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
        "config.toml",
    ] {
        assert_eq!(
            hub.file("org/run", "main", f),
            Some(read(&ck.join(f))),
            "{f}"
        );
    }
    assert_eq!(hub.file("org/run", "main", "config.toml.tmp"), None);
    // The weights went through LFS (pre-signed PUT, no token), the rest inline.
    let puts = hub
        .log()
        .iter()
        .filter(|l| l.starts_with("PUT /lfs/"))
        .count();
    assert_eq!(puts, 2);
    let card = String::from_utf8(hub.file("org/run", "main", "README.md").unwrap()).unwrap();
    for needle in [
        "base_model: org/tiny",
        "library_name: peft",
        "GRPO",
        "step 2",
        "| reward_mean | 0.5 |",
        "| loss | -0.01 |",
        "rank 4, alpha 8.0",
        "group_size = 8",
        env!("CARGO_PKG_VERSION"),
    ] {
        assert!(card.contains(needle), "{needle:?} missing from\n{card}");
    }
    assert!(
        !card.contains("0.75"),
        "metrics of a later step leaked in:\n{card}"
    );

    // Again, on a new branch into a subfolder, through two 503s on the commit: the LFS
    // objects are already stored, so nothing is uploaded again.
    hub.fail_next("/commit/", 2);
    let puts_before = puts;
    api.push_folder(&ck, "org/run", &push_options("dev", "checkpoint-2"))
        .unwrap();
    let log = hub.log();
    assert_eq!(
        log.iter().filter(|l| l.starts_with("PUT /lfs/")).count(),
        puts_before
    );
    assert_eq!(log.iter().filter(|l| l.contains("/commit/dev")).count(), 3);
    assert!(hub
        .file("org/run", "dev", "checkpoint-2/adapter_model.safetensors")
        .is_some());

    // Downloaded back as a checkpoint folder: the same bytes.
    let dir = api
        .folder(&HubFolder::parse("org/run@dev/checkpoint-2").unwrap())
        .unwrap();
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
        "config.toml",
    ] {
        assert_eq!(read(&dir.join(f)), read(&ck.join(f)), "{f}");
    }

    // Without a token, or with one the Hub refuses: a clear error naming the repo.
    let msg = client(&hub, cache.path())
        .push_folder(&ck, "org/run", &push_options("main", ""))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("org/run") && msg.contains("HF_TOKEN"), "{msg}");
    let err = client(&hub, cache.path())
        .with_token(Some("hf_wrong".into()))
        .push_folder(&ck, "org/other", &push_options("main", ""))
        .unwrap_err();
    assert!(
        matches!(err, HubError::WriteRefused { status: 401, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("org/other") && msg.contains("token"), "{msg}");
    let msg = api
        .clone()
        .with_offline(true)
        .push_folder(&ck, "org/run", &push_options("main", ""))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("org/run") && msg.contains("HF_HUB_OFFLINE"),
        "{msg}"
    );
    // A folder that is not a checkpoint is refused before anything is sent.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("notes.txt"), "x").unwrap();
    let msg = api
        .push_folder(empty.path(), "org/run", &push_options("main", ""))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not an augur checkpoint"), "{msg}");
}
