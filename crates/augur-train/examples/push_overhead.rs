//! How much `[hub] push_to` slows training steps: the tiny run of tests/grpo_tiny.rs with a
//! checkpoint every step, without and with the background push to the in-process fake Hub,
//! alternated `ROUNDS` times; prints the mean `time_step_s` of each.
//! `cargo run --release -p augur-train --example push_overhead -- [STEPS] [ROUNDS]`
//! The fake Hub runs in this process, so its own CPU time counts against the push: an upper
//! bound of what a remote Hub would cost.

use std::path::Path;

use augur_hub::fake::FakeHub;
use augur_train::grpo::{run, GrpoConfig, Launch};

fn config(root: &Path, steps: u64, push: bool) -> GrpoConfig {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let data: String = (0..64)
        .map(|i| {
            format!(
                "{{\"question\": \"{}\", \"answer\": \"{}\"}}\n",
                i % 10,
                i % 3
            )
        })
        .collect();
    std::fs::write(root.join("train.jsonl"), data).unwrap();
    let hub = if push {
        "[hub]\npush_to = \"bench/live\"\n"
    } else {
        ""
    };
    let toml = format!(
        "[model]\npath = {model:?}\ntokenizer = {tok:?}\n[lora]\nrank = 4\nalpha = 8.0\ntargets = [\"q\", \"v\", \"down\"]\n\
         [data]\ntrain = {train:?}\nraw = true\n[rollout]\nprompts_per_step = 3\ngroup_size = 8\nmax_new_tokens = 8\n\
         [algorithm]\nsteps = {steps}\nmicro_batch_size = 5\n[checkpoint]\ndir = {dir:?}\nevery = 1\n[logging]\nprint = false\n{hub}",
        model = fixtures.join("parity/llama"),
        tok = fixtures.join("char-tokenizer"),
        train = root.join("train.jsonl"),
        dir = root.join(if push { "push" } else { "plain" }),
    );
    GrpoConfig::from_toml_str(&toml, &[]).unwrap()
}

fn mean_step_secs(cfg: &GrpoConfig) -> f64 {
    let t: Vec<f64> = std::fs::read_to_string(cfg.metrics_path())
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["time_step_s"]
                .as_f64()
                .unwrap()
        })
        .collect();
    t.iter().sum::<f64>() / t.len() as f64
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<u64>().expect("a number"));
    let (steps, rounds) = (args.next().unwrap_or(20), args.next().unwrap_or(3));
    let hub = FakeHub::start();
    hub.set_token("hf_bench");
    std::env::set_var("HF_ENDPOINT", hub.url());
    std::env::set_var("HF_TOKEN", "hf_bench");
    let home = tempfile::tempdir().unwrap();
    std::env::set_var("HF_HOME", home.path());
    let (mut plain, mut push) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (with_push, out) in [(false, &mut plain), (true, &mut push)] {
            let root = tempfile::tempdir().unwrap();
            let cfg = config(root.path(), steps, with_push);
            run(&cfg, &Launch::fresh()).unwrap();
            out.push(mean_step_secs(&cfg));
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (a, b) = (mean(&plain), mean(&push));
    println!("{steps} steps x {rounds} rounds, checkpoint every step");
    println!("  mean step without push: {:.4} s  {plain:.4?}", a);
    println!("  mean step with push:    {:.4} s  {push:.4?}", b);
    println!("  slowdown: {:+.2}%", (b / a - 1.0) * 100.0);
    let pushed = (1..=steps)
        .filter(|s| {
            hub.file(
                "bench/live",
                "main",
                &format!("checkpoint-{s}/adapter_model.safetensors"),
            )
            .is_some()
        })
        .count();
    println!("  checkpoints on the fake Hub after the last round: {pushed}/{steps}");
}
