//! `kill -9` at random points of `augur grpo` runs on the tiny model, then resume from the latest
//! checkpoint (or start over when there is none): every run ends with the same metrics and the
//! same adapter as an uninterrupted run, and the run folder never holds an unreadable checkpoint.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const RUNS: u64 = 20;
const STEPS: u64 = 4;
/// Metrics that must match exactly (timings differ).
const SAME: [&str; 7] = [
    "step",
    "reward_mean",
    "loss",
    "grad_norm",
    "kl",
    "response_len",
    "rollouts_used",
];
const CHECKPOINT_FILES: [&str; 5] = [
    "adapter_config.json",
    "adapter_model.safetensors",
    "optimizer.safetensors",
    "trainer_state.json",
    "config.toml",
];

mod common;
use common::augur;

fn setup(root: &Path) -> PathBuf {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let train = root.join("train.jsonl");
    let data: String = (0..6)
        .map(|i| format!("{{\"question\": \"{i}\", \"answer\": \"{}\"}}\n", i % 3))
        .collect();
    std::fs::write(&train, data).unwrap();
    let config = root.join("grpo.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\npath = {:?}\ntokenizer = {:?}\n\
             [lora]\nrank = 4\nalpha = 8.0\ntargets = [\"q\", \"v\", \"down\"]\n\
             [data]\ntrain = {train:?}\nraw = true\n\
             [rollout]\nprompts_per_step = 3\ngroup_size = 8\nmax_new_tokens = 8\n\
             [algorithm]\nsteps = {STEPS}\nmicro_batch_size = 5\n[algorithm.loss]\nbeta = 0.04\n\
             [optimizer.schedule]\nlr = 1e-2\n\
             [checkpoint]\ndir = \"run\"\nevery = 1\n[logging]\nprint = false\n",
            fixtures.join("parity/llama"),
            fixtures.join("char-tokenizer"),
        ),
    )
    .unwrap();
    config
}

/// The metrics that must be reproduced, one object per line.
fn metrics(run: &Path) -> Vec<Vec<serde_json::Value>> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            SAME.iter().map(|k| v[k].clone()).collect()
        })
        .collect()
}

/// Every `checkpoint-N` folder holds every file (partial saves are hidden folders).
fn assert_readable(run: &Path) {
    for entry in std::fs::read_dir(run).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("checkpoint-") {
            for f in CHECKPOINT_FILES {
                assert!(entry.path().join(f).is_file(), "{name} lacks {f}");
            }
        }
    }
}

fn latest_checkpoint(run: &Path) -> Option<PathBuf> {
    std::fs::read_dir(run)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let step: u64 = e
                .file_name()
                .to_str()?
                .strip_prefix("checkpoint-")?
                .parse()
                .ok()?;
            Some((step, e.path()))
        })
        .max()
        .map(|(_, p)| p)
}

fn grpo(root: &Path, config: &Path, args: &[&str]) -> Command {
    let mut c = augur();
    c.current_dir(root)
        .arg("grpo")
        .arg("--config")
        .arg(config)
        .args(args);
    c
}

#[test]
fn killed_runs_resume_to_the_same_result() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let config = setup(root);
    let run = root.join("run");
    let t0 = Instant::now();
    assert!(grpo(root, &config, &[]).status().unwrap().success());
    let full_time = t0.elapsed();
    let reference = metrics(&run);
    assert_eq!(reference.len() as u64, STEPS);
    // Some completions are correct, so the updates (and what a resume must reproduce) are real.
    assert!(
        reference.iter().any(|m| m[1].as_f64().unwrap() > 0.0),
        "{reference:?}"
    );
    let adapter =
        std::fs::read(run.join(format!("checkpoint-{STEPS}/adapter_model.safetensors"))).unwrap();

    // SplitMix64 picks the kill points: anywhere from start-up to the end of the run.
    let mut state = 0x5EED_u64;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let (mut killed_mid_run, mut resumed) = (0, 0);
    for i in 0..RUNS {
        let delay = full_time.mul_f64((next() % 1000) as f64 / 1000.0);
        let mut child = grpo(root, &config, &["--overwrite"]).spawn().unwrap();
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        child.kill().unwrap_or_default();
        child.wait().unwrap();
        killed_mid_run += !finished as u32;
        assert_readable(&run);
        // Continue: from the latest complete checkpoint, or from scratch.
        let latest = latest_checkpoint(&run);
        resumed += latest.is_some() as u32;
        let status = match latest {
            Some(ck) => augur()
                .current_dir(root)
                .arg("grpo")
                .arg("--resume")
                .arg(&ck)
                .status()
                .unwrap(),
            None => grpo(root, &config, &["--overwrite"]).status().unwrap(),
        };
        assert!(status.success(), "run {i}: resume failed");
        assert_readable(&run);
        assert_eq!(metrics(&run), reference, "run {i} (killed after {delay:?})");
        let end = run.join(format!("checkpoint-{STEPS}/adapter_model.safetensors"));
        assert_eq!(
            std::fs::read(end).unwrap(),
            adapter,
            "run {i}: adapter differs"
        );
    }
    println!(
        "{killed_mid_run} of {RUNS} runs were killed before they finished, {resumed} resumed from \
         a checkpoint (full run {full_time:?})"
    );
    assert!(
        killed_mid_run >= RUNS as u32 / 2,
        "too few kills landed mid-run"
    );
    assert!(resumed >= 2, "too few kills landed after a checkpoint");
}
