//! The Hub through the `augur` binary, against the in-process fake Hub (`augur_hub::fake`)
//! named by `HF_ENDPOINT`, with `HF_HOME` in a temporary folder: model ids for `inspect` and
//! `[model] path`, offline re-use, tokens, `push`, and `grpo --resume hub:...`.

use std::path::{Path, PathBuf};
use std::process::Output;

use augur_hub::fake::{tiny_model_files as tiny_model, Cut, FakeHub};
use serde_json::Value;

mod common;
use common::fixtures;

/// `augur ARGS` with the Hub environment set (and the caller's own HF variables removed).
fn augur(hub: &FakeHub, hf_home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = common::augur();
    hub.environment(cmd.args(args), hf_home);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn line<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in {stdout}"))
}

#[test]
fn inspect_takes_hub_ids_online_offline_and_private() {
    let mut hub = FakeHub::start();
    hub.set_token("hf_secret");
    hub.add_repo("org/tiny", false, &tiny_model());
    hub.add_repo("org/private", true, &tiny_model());
    let home = tempfile::tempdir().unwrap();

    // A connection dropped mid-file is retried within the run and resumed.
    hub.cut_transfer(0, Cut::Drop(100_000));
    let out = augur(&hub, home.path(), &["inspect", "org/tiny"], &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("models--org--tiny/snapshots/"), "{stdout}");
    assert_eq!(line(&stdout, "layers:"), "layers:          2");
    assert_eq!(line(&stdout, "architecture:"), "architecture:    llama");
    let weights = hub
        .log()
        .iter()
        .filter(|l| l.starts_with("GET /cdn/") && !l.ends_with("bytes=0-0"))
        .count();
    assert_eq!(weights, 2, "{:?}", hub.log());

    // The same numbers as the local fixture.
    let local = common::augur()
        .arg("inspect")
        .arg(fixtures().join("parity/llama"))
        .arg("--tokenizer")
        .arg(fixtures().join("char-tokenizer"))
        .output()
        .unwrap();
    let local = String::from_utf8(local.stdout).unwrap();
    assert_eq!(line(&stdout, "parameters:"), line(&local, "parameters:"));

    // Private: anonymous is a 401 naming the repo; HF_TOKEN or $HF_HOME/token opens it.
    let out = augur(&hub, home.path(), &["inspect", "org/private"], &[]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("org/private") && stderr.contains("401") && stderr.contains("HF_TOKEN"),
        "{stderr}"
    );
    let out = augur(
        &hub,
        home.path(),
        &["inspect", "org/private"],
        &[("HF_TOKEN", "hf_secret")],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let other_home = tempfile::tempdir().unwrap();
    std::fs::write(other_home.path().join("token"), "hf_secret\n").unwrap();
    let out = augur(&hub, other_home.path(), &["inspect", "org/private"], &[]);
    assert!(out.status.success(), "{}", text(&out).1);

    // Offline with the server gone: the cache answers; a model never fetched is a clear miss.
    hub.stop();
    let offline = [("HF_HUB_OFFLINE", "1")];
    let out = augur(&hub, home.path(), &["inspect", "org/tiny"], &offline);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(line(&text(&out).0, "layers:"), "layers:          2");
    let out = augur(&hub, home.path(), &["inspect", "org/never"], &offline);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("org/never") && stderr.contains("HF_HUB_OFFLINE"),
        "{stderr}"
    );
}

fn metrics(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The run of crates/augur-train/tests/grpo_tiny.rs (3 steps, a checkpoint each), with the
/// model given as a Hub id and `extra` TOML appended; returns the config file.
fn tiny_run(root: &Path, extra: &str) -> PathBuf {
    let data: String = (0..6)
        .map(|i| format!("{{\"question\": \"{}\", \"answer\": \"{}\"}}\n", i, i % 3))
        .collect();
    std::fs::write(root.join("train.jsonl"), data).unwrap();
    let config = format!(
        "[model]\npath = \"org/tiny\"\n[lora]\nrank = 4\nalpha = 8.0\ntargets = [\"q\", \"v\", \"down\"]\n\
         [data]\ntrain = {train:?}\nraw = true\n[rollout]\nprompts_per_step = 3\ngroup_size = 8\nmax_new_tokens = 8\n\
         [algorithm]\nsteps = 3\nmicro_batch_size = 5\n[algorithm.loss]\nbeta = 0.04\n\
         [optimizer.schedule]\nlr = 1e-2\nkind = \"constant\"\n[checkpoint]\ndir = {dir:?}\nevery = 1\n[logging]\nprint = false\n{extra}",
        train = root.join("train.jsonl"),
        dir = root.join("run"),
    );
    std::fs::write(root.join("run.toml"), config).unwrap();
    root.join("run.toml")
}

#[test]
fn push_then_resume_from_the_hub_matches_a_local_resume() {
    let hub = FakeHub::start();
    hub.set_token("hf_write");
    hub.add_repo("org/tiny", false, &tiny_model());
    let home = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let cfg = tiny_run(root, "");
    let out = augur(
        &hub,
        home.path(),
        &["grpo", "--config", cfg.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let full = metrics(&root.join("run/metrics.jsonl"));
    assert_eq!(full.len(), 3);
    let ck = root.join("run/checkpoint-1");
    let adapter: Value =
        serde_json::from_slice(&std::fs::read(ck.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(adapter["base_model_name_or_path"], "org/tiny");

    // Push without a token fails clearly; with one it creates the private repo.
    let push = [
        "push",
        ck.to_str().unwrap(),
        "--repo",
        "org/run",
        "--private",
    ];
    let out = augur(&hub, home.path(), &push, &[]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("HF_TOKEN"), "{}", text(&out).1);
    let token = [("HF_TOKEN", "hf_write")];
    let out = augur(&hub, home.path(), &push, &token);
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(
        text(&out).1.contains("pushed 6 files (2 via LFS"),
        "{}",
        text(&out).1
    );
    assert_eq!(hub.is_private("org/run"), Some(true));
    let card = String::from_utf8(hub.file("org/run", "main", "README.md").unwrap()).unwrap();
    assert!(
        card.contains("base_model: org/tiny") && card.contains("| reward_mean |"),
        "{card}"
    );

    // Resume locally and from the Hub, each into its own folder: the same steps 2 and 3 as
    // the uninterrupted run.
    let resume = |from: &str, dir: &str, env: &[(&str, &str)]| {
        let set = format!("checkpoint.dir={:?}", root.join(dir).to_str().unwrap());
        augur(
            &hub,
            home.path(),
            &["grpo", "--resume", from, "--set", &set],
            env,
        )
    };
    let out = resume(ck.to_str().unwrap(), "local", &[]);
    assert!(out.status.success(), "{}", text(&out).1);
    let out = resume("hub:org/run", "from-hub", &[]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("org/run") && text(&out).1.contains("401"),
        "{}",
        text(&out).1
    );
    let out = resume("hub:org/run", "from-hub", &token);
    assert!(out.status.success(), "{}", text(&out).1);
    // The pushed adapter from the Hub generates what the local one does (sampling, same seed).
    let generate = |adapter: &str| {
        let args = [
            "generate",
            "--model",
            "org/tiny",
            "--adapter",
            adapter,
            "--prompt",
            "3",
            "--raw",
            "--n",
            "4",
            "--max-new-tokens",
            "6",
            "--seed",
            "5",
        ];
        let out = augur(&hub, home.path(), &args, &token);
        assert!(out.status.success(), "{}", text(&out).1);
        text(&out).0
    };
    let from_hub = generate("hub:org/run");
    assert_eq!(from_hub.lines().count(), 4);
    assert_eq!(from_hub, generate(ck.to_str().unwrap()));

    let local = metrics(&root.join("local/metrics.jsonl"));
    let from_hub = metrics(&root.join("from-hub/metrics.jsonl"));
    assert_eq!(local.len(), 2);
    assert_eq!(from_hub.len(), 2);
    for ((a, b), c) in full[1..].iter().zip(&local).zip(&from_hub) {
        for k in [
            "step",
            "reward_mean",
            "loss",
            "grad_norm",
            "kl",
            "response_len",
            "lr",
        ] {
            assert_eq!(a[k], b[k], "{k} local");
            assert_eq!(a[k], c[k], "{k} from the Hub");
        }
    }
}

#[test]
fn hub_push_to_pushes_every_checkpoint_during_the_run() {
    let hub = FakeHub::start();
    hub.set_token("hf_write");
    hub.add_repo("org/tiny", false, &tiny_model());
    let home = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let cfg = tiny_run(root, "[hub]\npush_to = \"org/live\"\n");
    let args = ["grpo", "--config", cfg.to_str().unwrap()];

    // Without a token the run stops before its first step, saying why.
    let out = augur(&hub, home.path(), &args, &[]);
    assert!(!out.status.success());
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("hub.push_to") && stderr.contains("HF_TOKEN"),
        "{stderr}"
    );
    assert!(!root.join("run/checkpoint-1").exists());

    let out = augur(&hub, home.path(), &args, &[("HF_TOKEN", "hf_write")]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(hub.is_private("org/live"), Some(true));
    for step in 1..=3 {
        let ck = root.join(format!("run/checkpoint-{step}"));
        for f in [
            "adapter_config.json",
            "adapter_model.safetensors",
            "optimizer.safetensors",
            "trainer_state.json",
            "config.toml",
        ] {
            let pushed = hub.file("org/live", "main", &format!("checkpoint-{step}/{f}"));
            assert_eq!(
                pushed,
                Some(std::fs::read(ck.join(f)).unwrap()),
                "checkpoint-{step}/{f}"
            );
        }
        let card = hub
            .file("org/live", "main", &format!("checkpoint-{step}/README.md"))
            .unwrap();
        assert!(String::from_utf8(card)
            .unwrap()
            .contains(&format!("step {step}")));
    }
}

/// `augur sft --resume hub:...` continues a pushed SFT checkpoint like a local resume: on the
/// shared run-folder path, into the folder `checkpoint.dir` names, with the same later steps.
#[test]
fn sft_resumes_from_the_hub_like_from_a_local_checkpoint() {
    let hub = FakeHub::start();
    hub.set_token("hf_write");
    let home = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let data: String = (0..6)
        .map(|i| format!("{{\"question\": \"{i}\", \"answer\": \"{}\"}}\n", i % 3))
        .collect();
    std::fs::write(root.join("train.jsonl"), data).unwrap();
    let config = root.join("sft.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\npath = {:?}\ntokenizer = {:?}\n[data]\ntrain = {:?}\nraw = true\n\
             [train]\nsteps = 3\nmicro_batch_size = 1\n[selection]\nmethod = \"maxloss\"\n\
             candidates = 3\nkeep = 2\n[checkpoint]\ndir = {:?}\nevery = 1\n[logging]\nprint = false\n",
            fixtures().join("parity/llama"),
            fixtures().join("char-tokenizer"),
            root.join("train.jsonl"),
            root.join("run"),
        ),
    )
    .unwrap();
    let out = augur(
        &hub,
        home.path(),
        &["sft", "--config", config.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let full = metrics(&root.join("run/metrics.jsonl"));
    assert_eq!(full.len(), 3);
    let ck = root.join("run/checkpoint-1");
    let token = [("HF_TOKEN", "hf_write")];
    let push = ["push", ck.to_str().unwrap(), "--repo", "org/sft"];
    let out = augur(&hub, home.path(), &push, &token);
    assert!(out.status.success(), "{}", text(&out).1);

    let resume = |from: &str, dir: &str| {
        let set = format!("checkpoint.dir={:?}", root.join(dir).to_str().unwrap());
        augur(
            &hub,
            home.path(),
            &["sft", "--resume", from, "--set", &set],
            &token,
        )
    };
    let out = resume(ck.to_str().unwrap(), "local");
    assert!(out.status.success(), "{}", text(&out).1);
    let out = resume("hub:org/sft", "from-hub");
    assert!(out.status.success(), "{}", text(&out).1);
    let local = metrics(&root.join("local/metrics.jsonl"));
    let from_hub = metrics(&root.join("from-hub/metrics.jsonl"));
    assert_eq!(local.len(), 2);
    assert_eq!(from_hub.len(), 2);
    for ((a, b), c) in full[1..].iter().zip(&local).zip(&from_hub) {
        for k in ["step", "loss", "grad_norm", "selected", "lr"] {
            assert_eq!(a[k], b[k], "{k} local");
            assert_eq!(a[k], c[k], "{k} from the Hub");
        }
    }
    assert!(root
        .join("from-hub/checkpoint-3/adapter_model.safetensors")
        .exists());
    // A fresh run into the used folder is refused, not mixed in.
    let out = augur(
        &hub,
        home.path(),
        &["sft", "--config", config.to_str().unwrap()],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("holds another run"),
        "{}",
        text(&out).1
    );
}
