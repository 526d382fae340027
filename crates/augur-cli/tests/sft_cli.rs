//! `augur sft` through the binary: bad data gets an error naming the file, the line and the
//! field; a good file trains, checkpoints and resumes from the checkpoint's own config.

use std::path::Path;
use std::process::Output;

mod common;
use common::{augur, failed, fixtures, succeeded};

/// Writes a config training on `train` (raw prompt/completion on the tiny fixture) and runs
/// `augur sft` on it.
fn sft(dir: &Path, train: &Path, extra: &[&str]) -> Output {
    let config = dir.join("sft.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\npath = {:?}\ntokenizer = {:?}\n[data]\ntrain = {train:?}\nraw = true\n\
             [train]\nsteps = 2\nmicro_batch_size = 1\n[selection]\ncandidates = 2\nkeep = 1\n\
             [checkpoint]\ndir = {:?}\nevery = 1\n",
            fixtures().join("parity/llama"),
            fixtures().join("char-tokenizer"),
            dir.join("run"),
        ),
    )
    .unwrap();
    augur()
        .args(["sft", "--config"])
        .arg(&config)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn bad_data_is_named_by_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.jsonl");
    let good = "{\"question\": \"1\", \"answer\": \"2\"}\n";
    for (body, want) in [
        (
            format!("{good}{{\"question\": \"1\", \n"),
            ":2: not a JSON object",
        ),
        (
            format!("{good}\n{{\"question\": \"3\"}}\n"),
            ":3: missing string field `answer`",
        ),
        (
            "{\"question\": 4, \"answer\": \"2\"}\n".to_string(),
            ":1: missing string field `question`",
        ),
        (String::new(), "no examples (the file is empty)"),
    ] {
        std::fs::write(&train, &body).unwrap();
        let out = sft(dir.path(), &train, &[]);
        let err = failed(&out);
        let path = train.display().to_string();
        assert!(err.contains(&path) && err.contains(want), "{body:?}: {err}");
    }
    // A field the format does not know is named too.
    std::fs::write(&train, good).unwrap();
    let out = sft(dir.path(), &train, &["--set", "data.format=messages"]);
    let err = failed(&out);
    assert!(err.contains(":1: missing field `messages`"), "{err}");
}

#[test]
fn sft_trains_and_resumes_from_the_checkpoint_config() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.jsonl");
    std::fs::write(
        &train,
        "{\"question\": \"1\", \"answer\": \"2\"}\n{\"question\": \"3\", \"answer\": \"4\"}\n",
    )
    .unwrap();
    let out = sft(dir.path(), &train, &["--set", "selection.method=maxloss"]);
    let err = succeeded(&out);
    assert!(err.contains("step    2") && err.contains("loss"), "{err}");
    assert!(err.contains("peak RSS"), "{err}");
    let run = dir.path().join("run");
    let out = augur()
        .args(["sft", "--set", "train.steps=3", "--resume"])
        .arg(run.join("checkpoint-2"))
        .output()
        .unwrap();
    succeeded(&out);
    let steps: Vec<u64> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| augur_train::run_dir::line_step(l).unwrap())
        .collect();
    assert_eq!(steps, [1, 2, 3]);
    assert!(run.join("checkpoint-3/adapter_model.safetensors").exists());
    // A second fresh run into the same folder is refused, not mixed in.
    let out = sft(dir.path(), &train, &[]);
    assert!(!out.status.success());
    assert!(failed(&out).contains("already holds a run"));
}

/// `--set lora.enabled=false` fine-tunes every weight; the checkpoint resumes from its own
/// config, and `augur export` without `--adapter` writes it as an HF folder that `augur
/// generate` runs.
#[test]
fn full_fine_tuning_resumes_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.jsonl");
    std::fs::write(
        &train,
        "{\"question\": \"1\", \"answer\": \"2\"}\n{\"question\": \"3\", \"answer\": \"4\"}\n",
    )
    .unwrap();
    let out = sft(dir.path(), &train, &["--set", "lora.enabled=false"]);
    succeeded(&out);
    let run = dir.path().join("run");
    let out = augur()
        .args(["sft", "--set", "train.steps=3", "--resume"])
        .arg(run.join("checkpoint-2"))
        .output()
        .unwrap();
    succeeded(&out);
    let ck = run.join("checkpoint-3");
    assert!(ck.join("model.safetensors").exists() && !ck.join("adapter_config.json").exists());
    let merged = dir.path().join("merged");
    let out = augur()
        .args(["export", "--model"])
        .arg(&ck)
        .arg("--out")
        .arg(&merged)
        .output()
        .unwrap();
    succeeded(&out);
    let load = |p: &Path| candle_core::safetensors::load(p, &candle_core::Device::Cpu).unwrap();
    let (a, b) = (
        load(&ck.join("model.safetensors")),
        load(&merged.join("model.safetensors")),
    );
    assert_eq!(a.len(), b.len());
    for (name, t) in &a {
        let d = (t - &b[name]).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0, "{name}");
    }
    let out = augur()
        .args(["generate", "--model"])
        .arg(&merged)
        .args([
            "--prompt",
            "1",
            "--raw",
            "--max-new-tokens",
            "2",
            "--n",
            "1",
        ])
        .output()
        .unwrap();
    succeeded(&out);
}
