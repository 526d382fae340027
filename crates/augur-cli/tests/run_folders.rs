//! Run data is never lost or mixed, and bad input gets an error that names it: `augur grpo`,
//! `generate` and `score` driven through the binary the way the README documents them, on the
//! tiny random Llama fixture.

use std::path::{Path, PathBuf};
use std::process::Output;

use augur_train::run_dir::line_step;

mod common;
use common::{augur, failed, fixtures, succeeded};

/// Writes a 4-prompt dataset and a 2-step config (checkpoint every step) running in `run`.
fn setup(root: &Path, run: &Path) -> PathBuf {
    let train = root.join("train.jsonl");
    let data: String = (0..4)
        .map(|i| format!("{{\"id\": \"p{i}\", \"question\": \"{i}\", \"answer\": \"{i}\"}}\n"))
        .collect();
    std::fs::write(&train, data).unwrap();
    let config = root.join("grpo.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\npath = {:?}\ntokenizer = {:?}\n[data]\ntrain = {train:?}\nraw = true\n\
             [rollout]\nprompts_per_step = 2\ngroup_size = 4\nmax_new_tokens = 4\n\
             [algorithm]\nsteps = 2\n[checkpoint]\ndir = {run:?}\nevery = 1\n",
            fixtures().join("parity/llama"),
            fixtures().join("char-tokenizer"),
        ),
    )
    .unwrap();
    config
}

fn grpo(args: &[&str], paths: &[&Path]) -> Output {
    let mut cmd = augur();
    cmd.arg("grpo").args(args);
    for p in paths {
        cmd.arg(p);
    }
    cmd.output().unwrap()
}

fn steps(metrics: &Path) -> Vec<u64> {
    std::fs::read_to_string(metrics)
        .unwrap()
        .lines()
        .map(|l| line_step(l).unwrap())
        .collect()
}

/// Every file under `dir` with its bytes, sorted by path.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(snapshot(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        match path.is_dir() {
            true => copy_dir(&path, &dest),
            false => {
                std::fs::copy(&path, &dest).unwrap();
            }
        }
    }
}

/// Finding 1: resuming from a copied run folder (no --config) writes into the copy and leaves
/// the original untouched, also when the metrics path was set explicitly inside the run folder.
#[test]
fn resuming_a_copy_never_touches_the_original() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let config = setup(tmp.path(), &a);
    let metrics_set = format!("logging.metrics={:?}", a.join("metrics.jsonl"));
    succeeded(&grpo(&["--set", &metrics_set, "--config"], &[&config]));
    copy_dir(&a, &b);
    let original = snapshot(&a);

    let out = grpo(
        &["--set", "algorithm.steps=3", "--resume"],
        &[&b.join("checkpoint-2")],
    );
    let err = succeeded(&out);
    assert!(
        err.contains(&b.join("checkpoint-3").display().to_string()),
        "{err}"
    );
    assert_eq!(snapshot(&a), original, "the original run folder changed");
    assert_eq!(steps(&b.join("metrics.jsonl")), [1, 2, 3]);
    assert!(b.join("checkpoint-3/trainer_state.json").is_file());
    // The copy's resolved config now names the copy.
    let saved = std::fs::read_to_string(b.join("config.toml")).unwrap();
    assert!(saved.contains(&format!("{:?}", b)), "{saved}");
}

/// Finding 2: a fresh run into a folder holding another run is refused and the folder kept;
/// with --overwrite the old run is replaced entirely (no stale checkpoints left behind).
#[test]
fn fresh_run_refuses_an_occupied_folder_unless_overwriting() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let config = setup(tmp.path(), &run);
    succeeded(&grpo(&["--config"], &[&config]));
    let before = snapshot(&run);

    let err = failed(&grpo(
        &["--set", "algorithm.steps=1", "--config"],
        &[&config],
    ));
    assert!(
        err.contains("holds another run") && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(snapshot(&run), before);

    succeeded(&grpo(
        &["--overwrite", "--set", "algorithm.steps=1", "--config"],
        &[&config],
    ));
    assert_eq!(steps(&run.join("metrics.jsonl")), [1]);
    assert!(run.join("checkpoint-1").is_dir());
    assert!(
        !run.join("checkpoint-2").exists(),
        "a checkpoint of the old run is left"
    );
}

/// Finding 3: a partial checkpoint (a legacy one missing files, or a kill mid-save) gives an
/// error naming the missing file, with and without --config, and the partial folder a killed
/// save leaves is invisible and removed by the next run.
#[test]
fn partial_checkpoints_are_named_and_cleaned() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let config = setup(tmp.path(), &run);
    succeeded(&grpo(&["--config"], &[&config]));

    let partial = run.join("checkpoint-5");
    copy_dir(&run.join("checkpoint-2"), &partial);
    std::fs::remove_file(partial.join("trainer_state.json")).unwrap();
    std::fs::remove_file(partial.join("config.toml")).unwrap();
    let with_config = failed(&grpo(
        &["--config"],
        &[&config, Path::new("--resume"), &partial],
    ));
    let without = failed(&grpo(&["--resume"], &[&partial]));
    for err in [with_config, without] {
        assert!(
            err.contains(&partial.display().to_string()) && err.contains("trainer_state.json"),
            "{err}"
        );
    }
    std::fs::remove_dir_all(&partial).unwrap();

    // What a kill during a save leaves: a hidden partial folder, never a checkpoint-N.
    let killed = run.join(".partial-checkpoint-3");
    copy_dir(&run.join("checkpoint-2"), &killed);
    std::fs::remove_file(killed.join("config.toml")).unwrap();
    succeeded(&grpo(
        &["--set", "algorithm.steps=3", "--resume"],
        &[&run.join("checkpoint-2")],
    ));
    assert!(!killed.exists());
    assert!(run.join("checkpoint-3/config.toml").is_file());
    assert_eq!(steps(&run.join("metrics.jsonl")), [1, 2, 3]);
}

/// Metrics are truncated on resume only down to the resumed step: a crash after logging step 3
/// but before its checkpoint keeps steps 1-2 and re-logs 3 once.
#[test]
fn resume_truncates_metrics_only_to_the_resumed_step() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let config = setup(tmp.path(), &run);
    succeeded(&grpo(&["--config"], &[&config]));
    let metrics = run.join("metrics.jsonl");
    let logged = std::fs::read_to_string(&metrics).unwrap();
    std::fs::write(&metrics, format!("{logged}{{\"step\": 3}}\n{{\"ste")).unwrap();
    succeeded(&grpo(
        &["--set", "algorithm.steps=3", "--resume"],
        &[&run.join("checkpoint-2")],
    ));
    let after = std::fs::read_to_string(&metrics).unwrap();
    assert!(after.starts_with(&logged), "steps 1-2 changed");
    assert_eq!(steps(&metrics), [1, 2, 3]);
    // Resuming an earlier checkpoint would drop checkpoints 2-3: refused, nothing changes.
    let err = failed(&grpo(&["--resume"], &[&run.join("checkpoint-1")]));
    assert!(err.contains("checkpoint-3"), "{err}");
    assert_eq!(std::fs::read_to_string(&metrics).unwrap(), after);
}

/// Finding 4: an over-long prompt is found when the dataset loads, named by file, line and id;
/// `data.too_long = "skip"` leaves it out and says how many were skipped.
#[test]
fn over_long_prompts_are_found_at_load() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let config = setup(tmp.path(), &run);
    // The fixture tokenizer makes one token of any text; split on whitespace, "7 7 7 ..." is
    // one token per 7.
    let tokenizer = tmp.path().join("tokenizer");
    std::fs::create_dir(&tokenizer).unwrap();
    let json = std::fs::read_to_string(fixtures().join("char-tokenizer/tokenizer.json")).unwrap();
    let json = json.replacen(
        "\"pre_tokenizer\": null",
        "\"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"}",
        1,
    );
    std::fs::write(tokenizer.join("tokenizer.json"), json).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let old_tokenizer = format!("{:?}", fixtures().join("char-tokenizer"));
    std::fs::write(
        &config,
        text.replace(&old_tokenizer, &format!("{tokenizer:?}")),
    )
    .unwrap();
    let train = tmp.path().join("train.jsonl");
    let mut data = std::fs::read_to_string(&train).unwrap();
    data += &format!(
        "{{\"id\": \"long-one\", \"question\": \"{}\", \"answer\": \"1\"}}\n",
        "7 ".repeat(300)
    );
    std::fs::write(&train, data).unwrap();
    let err = failed(&grpo(&["--config"], &[&config]));
    assert!(
        err.contains(&format!("{}: line 5 (id long-one)", train.display())),
        "{err}"
    );
    assert!(!run.join("checkpoint-1").exists());
    let err = succeeded(&grpo(
        &["--set", "data.too_long=skip", "--config"],
        &[&config],
    ));
    assert!(err.contains("skipped 1 of 5 prompts"), "{err}");
}

/// Finding 5: config type and range errors name the key (and its line in the file).
#[test]
fn config_errors_name_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let config = setup(tmp.path(), &run);
    let text = std::fs::read_to_string(&config).unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        text.replace("group_size = 4", "group_size = \"eight\""),
    )
    .unwrap();
    let err = failed(&grpo(&["--config"], &[&bad]));
    assert!(
        err.contains("rollout.group_size (line 9)") && err.contains("eight"),
        "{err}"
    );
    let err = failed(&grpo(
        &["--set", "rollout.temperature=hot", "--config"],
        &[&config],
    ));
    assert!(err.contains("rollout.temperature (--set)"), "{err}");
    for (set, key) in [
        ("algorithm.steps=0", "algorithm.steps"),
        ("rollout.temperature=-1.0", "rollout.temperature"),
        ("rollout.group_size=1", "rollout.group_size"),
        (
            "rollout.prompts_per_step=100000",
            "rollout.prompts_per_step",
        ),
        (
            "rollout.max_new_tokens=18446744073709551615",
            "max_new_tokens",
        ),
    ] {
        let err = failed(&grpo(&["--set", set, "--config"], &[&config]));
        assert!(err.contains(key), "{set}: {err}");
    }
    assert!(!run.exists() || !run.join("checkpoint-1").exists());
}

/// Finding 6: a max_new_tokens that overflows when added to the prompt length is rejected
/// naming the value, not reported as a full KV cache.
#[test]
fn huge_max_new_tokens_does_not_wrap() {
    let out = augur()
        .args([
            "generate",
            "--raw",
            "--prompt",
            "12",
            "--max-new-tokens",
            "18446744073709551615",
        ])
        .arg("--model")
        .arg(fixtures().join("parity/llama"))
        .arg("--tokenizer")
        .arg(fixtures().join("char-tokenizer"))
        .output()
        .unwrap();
    let err = failed(&out);
    assert!(
        err.contains("max_new_tokens 18446744073709551615") && err.contains("context window"),
        "{err}"
    );
}

/// Finding 8: output paths are checked before the work, errors carry the right label, causes
/// are not printed twice, and `score` ends with a sentence.
#[test]
fn errors_come_early_once_and_with_the_right_label() {
    let tmp = tempfile::tempdir().unwrap();
    let nowhere = tmp.path().join("no/such/dir/out.jsonl");
    // The model does not exist either: the output is checked first.
    let out = augur()
        .args([
            "generate",
            "--prompt",
            "hi",
            "--model",
            "/nonexistent/model.gguf",
            "--output",
        ])
        .arg(&nowhere)
        .output()
        .unwrap();
    let err = failed(&out);
    assert!(err.contains(&nowhere.display().to_string()), "{err}");

    let input = tmp.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"completion\": \"7\", \"answer\": \"7\"}\n{\"completion\": \"1\", \"answer\": \"2\"}\n",
    )
    .unwrap();
    let out = augur()
        .args(["score", "--task", "math", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&nowhere)
        .output()
        .unwrap();
    let err = failed(&out);
    assert!(
        err.contains("--output") && err.contains(&nowhere.display().to_string()),
        "{err}"
    );
    let out = augur()
        .args(["score", "--task", "math", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(tmp.path().join("scored.jsonl"))
        .output()
        .unwrap();
    succeeded(&out);
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(
        said.starts_with("scored 2 lines: 1 correct (50.0%)"),
        "{said}"
    );
    assert!(!said.contains("ScoreSummary"), "{said}");

    // A missing config: the OS reason appears once.
    let err = failed(&grpo(&["--config"], &[&tmp.path().join("missing.toml")]));
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");

    // An adapter whose tensors do not fit the model is an adapter error, not "optimizer state".
    let run = tmp.path().join("run");
    let config = setup(tmp.path(), &run);
    succeeded(&grpo(
        &["--set", "algorithm.steps=1", "--config"],
        &[&config],
    ));
    let adapter = run.join("checkpoint-1");
    let cfg_path = adapter.join("adapter_config.json");
    let peft = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(&cfg_path, peft.replace("\"r\": 8", "\"r\": 4")).unwrap();
    let out = augur()
        .args([
            "generate",
            "--raw",
            "--prompt",
            "1",
            "--max-new-tokens",
            "2",
            "--model",
        ])
        .arg(fixtures().join("parity/llama"))
        .arg("--tokenizer")
        .arg(fixtures().join("char-tokenizer"))
        .arg("--adapter")
        .arg(&adapter)
        .output()
        .unwrap();
    let err = failed(&out);
    assert!(
        err.contains("adapter ") && !err.contains("optimizer state"),
        "{err}"
    );
    assert!(err.contains("adapter_model.safetensors"), "{err}");
}

/// `--kv-dtype bf16` / `[rollout] kv_dtype = "bf16"` through the binary: `generate` writes its
/// samples with finite logprobs, a GRPO step runs and its saved config keeps the key, and a bad
/// value is an error naming the flag or the key with the value.
#[test]
fn bf16_kv_cache_runs_through_generate_and_grpo() {
    let generate = |kv: &str| {
        augur()
            .args([
                "generate",
                "--raw",
                "--prompt",
                "12",
                "--prompt",
                "7",
                "--n",
                "3",
                "--max-new-tokens",
                "6",
                "--kv-dtype",
                kv,
                "--model",
            ])
            .arg(fixtures().join("parity/llama"))
            .arg("--tokenizer")
            .arg(fixtures().join("char-tokenizer"))
            .output()
            .unwrap()
    };
    let out = generate("bf16");
    succeeded(&out);
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    for line in &lines {
        let logprobs = line["logprobs"].as_array().unwrap();
        assert_eq!(logprobs.len(), line["token_ids"].as_array().unwrap().len());
        assert!(logprobs
            .iter()
            .all(|l| l.as_f64().is_some_and(|l| l.is_finite() && l <= 0.0)));
    }
    let err = failed(&generate("f16"));
    assert!(err.contains("--kv-dtype") && err.contains("f16"), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let config = setup(tmp.path(), &run);
    succeeded(&grpo(
        &[
            "--set",
            "algorithm.steps=1",
            "--set",
            "rollout.kv_dtype=\"bf16\"",
            "--config",
        ],
        &[&config],
    ));
    assert_eq!(steps(&run.join("metrics.jsonl")), [1]);
    let saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(saved.contains("kv_dtype = \"bf16\""), "{saved}");
    let err = failed(&grpo(
        &["--set", "rollout.kv_dtype=\"int8\"", "--config"],
        &[&config],
    ));
    assert!(
        err.contains("rollout.kv_dtype (--set)") && err.contains("int8"),
        "{err}"
    );
}
