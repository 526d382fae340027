//! Time the GRPO policy update (teacher-forced forward, loss, backward, AdamW) on a real model,
//! without rollouts, so changes to the training path can be measured alone.
//!
//! `cargo run --release -p augur-train --example update_bench -- MODEL [ROWS] [PROMPT_LEN]
//!   [COMPLETION_LEN] [REPS] [MICRO_BATCH] [LOGITS_MEMORY_MB] [LORA_RANK] [TARGETS] [DTYPE]
//!   [CHECKPOINTING]`
//!
//! Defaults follow `scripts/bench_trl.py` and the quickstart: 32 completions (4 prompts x 8),
//! 40 prompt tokens, 32 completion tokens, micro-batches of 8, LoRA r8 on q/k/v/o (`TARGETS`
//! `all`: every projection), the default logits budget (256 MiB), f32 frozen weights (`DTYPE`
//! `bf16`: `[model] dtype = "bf16"`), no activation checkpointing (`CHECKPOINTING` 1:
//! `[algorithm] activation_checkpointing = true`), one optimizer step per batch. `REPS = 0` reports the single untimed-warm-up run (for peak memory alone). Token ids are fixed pseudo-random values and advantages alternate
//! sign, so every run does the same work. Prints one JSON line per timed repetition (after one
//! warm-up) with the update's wall time, tokens/s and peak RSS.

use std::time::Instant;

use augur_model::{load_model, BuildOptions, LoraConfig, Target, WeightDtype};
use augur_train::grpo::config::AlgorithmSection;
use augur_train::grpo::update::{policy_update, Rollout};
use augur_train::optim::{AdamWConfig, FusedAdamW};
use augur_train::schedule::{LrSchedule, ScheduleConfig, ScheduleKind};
use serde_json::json;

fn arg(args: &[String], i: usize, default: usize) -> anyhow::Result<usize> {
    args.get(i)
        .map(|s| {
            s.parse()
                .map_err(|e| anyhow::anyhow!("argument {i} ({s:?}): {e}"))
        })
        .transpose()
        .map(|v| v.unwrap_or(default))
}

fn main() -> anyhow::Result<()> {
    augur_model::mem::keep_freed_memory();
    augur_model::cpu_threads::configure();
    let args: Vec<String> = std::env::args().collect();
    let model_path = args.get(1).ok_or_else(|| {
        anyhow::anyhow!("usage: update_bench MODEL [ROWS] [PROMPT_LEN] [COMPLETION_LEN] [REPS]")
    })?;
    let (rows, prompt_len, completion_len, reps) = (
        arg(&args, 2, 32)?,
        arg(&args, 3, 40)?,
        arg(&args, 4, 32)?,
        arg(&args, 5, 3)?,
    );
    let (micro_batch, logits_memory_mb, rank) =
        (arg(&args, 6, 8)?, arg(&args, 7, 256)?, arg(&args, 8, 8)?);
    let targets = match args.get(9).map(String::as_str) {
        None | Some("qkvo") => vec![Target::QProj, Target::KProj, Target::VProj, Target::OProj],
        Some("all") => Target::ALL.to_vec(),
        Some(other) => anyhow::bail!("TARGETS must be qkvo or all, got {other:?}"),
    };
    let weights: WeightDtype = match args.get(10) {
        Some(s) => s.parse().map_err(|e| anyhow::anyhow!("DTYPE: {e}"))?,
        None => WeightDtype::F32,
    };
    let activation_checkpointing = match arg(&args, 11, 0)? {
        0 => false,
        1 => true,
        other => anyhow::bail!("CHECKPOINTING must be 0 or 1, got {other}"),
    };
    let opts = BuildOptions {
        weights,
        ..Default::default()
    };
    let mut loaded = load_model(model_path.as_ref(), None, &opts)?;
    loaded.model.attach_lora(&LoraConfig {
        rank,
        alpha: 2.0 * rank as f64,
        targets,
        seed: 0,
    })?;
    let model = &loaded.model;
    // The model and adapters alone, so the update's own share of the peak can be told apart.
    let peak_after_load_kb = augur_model::mem::peak_rss_kb();
    let vocab = model.cfg.vocab_size as u64;
    let id =
        |r: usize, t: usize| ((r as u64 * 7919 + t as u64 * 104_729) % (vocab - 200) + 100) as u32;
    let rollouts: Vec<Rollout> = (0..rows)
        .map(|r| Rollout {
            group: r / 8,
            prompt_ids: (0..prompt_len).map(|t| id(r / 8, t)).collect(),
            completion: (0..completion_len).map(|t| id(r, prompt_len + t)).collect(),
            old_logp: vec![-3.0; completion_len],
            advantage: if r % 2 == 0 { 1.0 } else { -1.0 },
            truncated: false,
        })
        .collect();
    let mut opt = FusedAdamW::new(model.lora_vars(), AdamWConfig::default())?;
    let schedule = LrSchedule::new(ScheduleConfig {
        lr: 1e-5,
        kind: ScheduleKind::Constant,
        ..Default::default()
    })?;
    let cfg = AlgorithmSection {
        micro_batch_size: micro_batch,
        logits_memory_mb,
        activation_checkpointing,
        ..Default::default()
    };
    let pad = loaded.tokenizer.pad_id;
    for rep in 0..=reps {
        let t = Instant::now();
        let report = policy_update(model, &mut opt, &schedule, &rollouts, &cfg, pad)?;
        let secs = t.elapsed().as_secs_f64();
        if rep > 0 || reps == 0 {
            let record = json!({
                "bench": "update", "rows": rows, "prompt_len": prompt_len,
                "completion_len": completion_len, "micro_batch": cfg.micro_batch_size,
                "logits_memory_mb": logits_memory_mb, "lora_rank": rank,
                "weights": format!("{:?}", model.weight_dtype()).to_lowercase(),
                "activation_checkpointing": activation_checkpointing,
                "threads": rayon::current_num_threads(), "seconds": secs,
                "train_tokens_per_sec": report.train_tokens as f64 / secs,
                "peak_rss_kb": augur_model::mem::peak_rss_kb(),
                "peak_rss_after_load_kb": peak_after_load_kb,
            });
            println!("{record}");
        }
    }
    Ok(())
}
