//! The `lr` that `metrics.jsonl` logs is the rate of the step's last optimizer update, as the
//! schedule's formula gives it, for every schedule kind with and without warmup. The formula is
//! written out here by hand, independently of `LrSchedule`.

use std::path::{Path, PathBuf};

use augur_train::grpo::{run, GrpoConfig, Launch};
use serde_json::Value;

/// A tiny-model run of 3 steps with 2 optimizer updates per step (16 completions, mini-batches
/// of 8) and the given `[optimizer.schedule]` body.
fn config(root: &Path, schedule: &str) -> GrpoConfig {
    let data: String = (0..6)
        .map(|i| format!("{{\"question\": \"{}\", \"answer\": \"{}\"}}\n", i, i % 3))
        .collect();
    std::fs::write(root.join("train.jsonl"), data).unwrap();
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let toml = format!(
        "[model]\npath = {fixture:?}\ntokenizer = {tokenizer:?}\n[lora]\nrank = 2\n\
         [data]\ntrain = {train:?}\nraw = true\n[rollout]\nprompts_per_step = 2\ngroup_size = 8\nmax_new_tokens = 4\n\
         [algorithm]\nsteps = 3\nmini_batch_size = 8\nmicro_batch_size = 8\n\
         [optimizer.schedule]\n{schedule}\n[checkpoint]\ndir = {dir:?}\nevery = 100\n[logging]\nprint = false\n",
        fixture = fixtures.join("parity/llama"),
        tokenizer = fixtures.join("char-tokenizer"),
        train = root.join("train.jsonl"),
        dir = root.join("run"),
    );
    GrpoConfig::from_toml_str(&toml, &[]).unwrap()
}

/// Warmup `lr·(k+1)/w` for update `k < w`, then constant, or a half cosine from `lr` at `w`
/// to 0 at `total`.
fn by_hand(lr: f64, warmup: u64, cosine_total: Option<u64>, k: u64) -> f64 {
    if k < warmup {
        return lr * (k + 1) as f64 / warmup as f64;
    }
    match cosine_total {
        None => lr,
        Some(total) => {
            let progress = ((k - warmup) as f64 / (total - warmup) as f64).min(1.0);
            0.5 * lr * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }
}

#[test]
fn logged_lr_follows_the_schedule_at_every_step() {
    // 3 steps x 2 updates: the cosine's total is 6 updates.
    let cases = [
        ("lr = 5e-5\nkind = \"constant\"", 5e-5, 0, None),
        (
            "lr = 5e-5\nkind = \"constant\"\nwarmup_steps = 3",
            5e-5,
            3,
            None,
        ),
        ("lr = 5e-5\nkind = \"cosine\"", 5e-5, 0, Some(6)),
        (
            "lr = 5e-5\nkind = \"cosine\"\nwarmup_steps = 1",
            5e-5,
            1,
            Some(6),
        ),
    ];
    for (schedule, lr, warmup, total) in cases {
        let root = tempfile::tempdir().unwrap();
        let cfg = config(root.path(), schedule);
        run(&cfg, &Launch::fresh()).unwrap();
        let text = std::fs::read_to_string(cfg.metrics_path()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{schedule}");
        let mut updates = 0u64;
        for m in &lines {
            let n = m["optimizer_steps"].as_u64().unwrap();
            // 2 nominal updates; fewer only if empty completions were dropped.
            assert!((1..=2).contains(&n), "{schedule}: {m}");
            updates += n;
            let want = by_hand(lr, warmup, total, updates - 1);
            let got = m["lr"].as_f64().unwrap();
            assert!(
                (got - want).abs() <= 1e-12 * lr,
                "{schedule}: step {} logged lr {got}, formula {want}",
                m["step"]
            );
        }
    }
}
