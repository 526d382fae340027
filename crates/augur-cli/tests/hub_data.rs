//! Hub datasets and adapters through the `augur` binary, against the fake Hub named by
//! `HF_ENDPOINT`: `[data] train = "hub:org/name:config/split"` (a Parquet split) trains exactly
//! as the same rows from a local JSONL file do, for `grpo` and `sft`; `[model] adapter =
//! "hub:org/name"` (a bare PEFT adapter repo) starts `grpo` and `sft` from that adapter, exactly
//! as the same files in a local folder do; and `sft` takes a Hub model id in `[model] path`.

use std::path::{Path, PathBuf};
use std::process::Output;

use augur_data::testing::write_parquet;
use augur_hub::fake::{tiny_model_files as tiny_model, FakeHub};
use serde_json::{Map, Value};

/// `augur ARGS` with the Hub environment set (and the caller's own HF variables removed).
fn augur(hub: &FakeHub, hf_home: &Path, args: &[&str]) -> Output {
    let mut cmd = common::augur();
    hub.environment(cmd.args(args), hf_home).output().unwrap()
}

mod common;
use common::stderr;

fn metrics(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The rows the tiny runs train on, as a local JSONL file and as a Hub dataset repo laid out
/// like `openai/gsm8k` (`main/train-00000-of-00001.parquet`).
fn arithmetic(hub: &FakeHub, root: &Path) -> PathBuf {
    let rows: Vec<Map<String, Value>> = (0..6)
        .map(|i| {
            let line = format!("{{\"question\": \"{i}\", \"answer\": \"{}\"}}", i % 3);
            serde_json::from_str(&line).unwrap()
        })
        .collect();
    let jsonl = root.join("train.jsonl");
    let text: Vec<String> = rows
        .iter()
        .map(|r| Value::Object(r.clone()).to_string())
        .collect();
    std::fs::write(&jsonl, text.join("\n") + "\n").unwrap();
    let parquet = root.join("train.parquet");
    write_parquet(&parquet, &rows);
    hub.add_dataset(
        "org/arith",
        &[(
            "main/train-00000-of-00001.parquet",
            std::fs::read(&parquet).unwrap(),
        )],
    );
    jsonl
}

/// A 2-step GRPO run of the tiny Hub model on `train` into `root/dir`, with `extra` TOML.
fn grpo(hub: &FakeHub, home: &Path, root: &Path, dir: &str, train: &str, extra: &str) -> Output {
    let config = format!(
        "[model]\npath = \"org/tiny\"\n{extra}\n[lora]\nrank = 4\nalpha = 8.0\ntargets = [\"q\", \"v\"]\n\
         [data]\ntrain = {train:?}\nraw = true\n[rollout]\nprompts_per_step = 3\ngroup_size = 4\nmax_new_tokens = 6\n\
         [algorithm]\nsteps = 2\nmicro_batch_size = 6\n[optimizer.schedule]\nlr = 1e-2\nkind = \"constant\"\n\
         [checkpoint]\ndir = {:?}\n[logging]\nprint = false\n",
        root.join(dir),
    );
    let path = root.join(format!("{dir}.toml"));
    std::fs::write(&path, config).unwrap();
    augur(hub, home, &["grpo", "--config", path.to_str().unwrap()])
}

/// A 2-step SFT run of `model` on `train` into `root/dir`, with `extra` TOML in `[model]`.
fn sft(hub: &FakeHub, home: &Path, root: &Path, dir: &str, train: &str, extra: &str) -> Output {
    let config = format!(
        "[model]\npath = \"org/tiny\"\n{extra}\n[lora]\nrank = 4\nalpha = 8.0\ntargets = [\"q\", \"v\"]\n\
         [data]\ntrain = {train:?}\nraw = true\n[train]\nsteps = 2\nmicro_batch_size = 1\n\
         [selection]\ncandidates = 2\nkeep = 1\n[checkpoint]\ndir = {:?}\n[logging]\nprint = false\n",
        root.join(dir),
    );
    let path = root.join(format!("{dir}.toml"));
    std::fs::write(&path, config).unwrap();
    augur(hub, home, &["sft", "--config", path.to_str().unwrap()])
}

fn same_steps(a: &[Value], b: &[Value], keys: &[&str]) {
    assert_eq!(a.len(), b.len());
    assert!(!a.is_empty());
    for (x, y) in a.iter().zip(b) {
        for k in keys {
            assert!(!x[k].is_null(), "{k} missing in {x}");
            assert_eq!(x[k], y[k], "{k}");
        }
    }
}

#[test]
fn grpo_trains_on_a_hub_parquet_split_and_starts_from_a_hub_adapter() {
    let hub = FakeHub::start();
    hub.add_repo("org/tiny", false, &tiny_model());
    let (home, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (home, root) = (home.path(), root.path());
    let jsonl = arithmetic(&hub, root);

    let out = grpo(&hub, home, root, "local", jsonl.to_str().unwrap(), "");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = grpo(&hub, home, root, "hub", "hub:org/arith:main/train", "");
    assert!(out.status.success(), "{}", stderr(&out));
    let keys = ["reward_mean", "loss", "grad_norm", "response_len"];
    same_steps(
        &metrics(&root.join("local/metrics.jsonl")),
        &metrics(&root.join("hub/metrics.jsonl")),
        &keys,
    );
    assert!(home.join("hub/datasets--org--arith/snapshots").is_dir());

    // A bare PEFT adapter repo (adapter_config.json + adapter_model.safetensors, here an SFT
    // run's) as the starting adapter: the same run as from a local folder holding those files.
    let out = sft(&hub, home, root, "sft", jsonl.to_str().unwrap(), "");
    assert!(out.status.success(), "{}", stderr(&out));
    let ck = root.join("sft/checkpoint-2");
    let bare = root.join("bare-adapter");
    std::fs::create_dir(&bare).unwrap();
    let mut files = Vec::new();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(ck.join(f), bare.join(f)).unwrap();
        files.push((f, std::fs::read(ck.join(f)).unwrap()));
    }
    hub.add_repo("org/adapter", false, &files);
    let train = jsonl.to_str().unwrap();
    let local_start = format!("adapter = {:?}", bare.to_str().unwrap());
    let out = grpo(&hub, home, root, "warm-local", train, &local_start);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = grpo(
        &hub,
        home,
        root,
        "warm-hub",
        train,
        "adapter = \"hub:org/adapter\"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    same_steps(
        &metrics(&root.join("warm-local/metrics.jsonl")),
        &metrics(&root.join("warm-hub/metrics.jsonl")),
        &keys,
    );
    let weights = |dir: &str| {
        std::fs::read(
            root.join(dir)
                .join("checkpoint-2/adapter_model.safetensors"),
        )
        .unwrap()
    };
    assert_eq!(weights("warm-local"), weights("warm-hub"));
    // A warm start is not a fresh start.
    assert_ne!(weights("warm-hub"), weights("local"));

    // A missing adapter repo and a dataset split the repo lacks are named.
    let out = grpo(
        &hub,
        home,
        root,
        "no-adapter",
        jsonl.to_str().unwrap(),
        "adapter = \"hub:org/none\"",
    );
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("model.adapter = hub:org/none") && err.contains("org/none"),
        "{err}"
    );
    let out = grpo(&hub, home, root, "no-split", "hub:org/arith:main/test", "");
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("hub:org/arith:main/test")
            && err.contains("it has (config/split): main/train"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn sft_takes_a_hub_model_a_hub_parquet_split_and_a_hub_adapter() {
    let hub = FakeHub::start();
    hub.add_repo("org/tiny", false, &tiny_model());
    let (home, root) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (home, root) = (home.path(), root.path());
    let jsonl = arithmetic(&hub, root);

    let out = sft(&hub, home, root, "local", jsonl.to_str().unwrap(), "");
    assert!(out.status.success(), "{}", stderr(&out));
    let adapter: Value = serde_json::from_slice(
        &std::fs::read(root.join("local/checkpoint-2/adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(adapter["base_model_name_or_path"], "org/tiny");
    let out = sft(&hub, home, root, "hub", "hub:org/arith:main/train", "");
    assert!(out.status.success(), "{}", stderr(&out));
    let keys = ["loss", "grad_norm"];
    let fresh = metrics(&root.join("local/metrics.jsonl"));
    same_steps(&fresh, &metrics(&root.join("hub/metrics.jsonl")), &keys);

    let ck = root.join("local/checkpoint-2");
    let files: Vec<(&str, Vec<u8>)> = ["adapter_config.json", "adapter_model.safetensors"]
        .into_iter()
        .map(|f| (f, std::fs::read(ck.join(f)).unwrap()))
        .collect();
    hub.add_repo("org/sft-adapter", false, &files);
    let out = sft(
        &hub,
        home,
        root,
        "warm-hub",
        jsonl.to_str().unwrap(),
        "adapter = \"hub:org/sft-adapter\"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let local_start = format!("adapter = {:?}", ck.to_str().unwrap());
    let out = sft(
        &hub,
        home,
        root,
        "warm-local",
        jsonl.to_str().unwrap(),
        &local_start,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let warm = metrics(&root.join("warm-hub/metrics.jsonl"));
    same_steps(
        &metrics(&root.join("warm-local/metrics.jsonl")),
        &warm,
        &keys,
    );
    assert_ne!(fresh[0]["loss"], warm[0]["loss"]);
}
