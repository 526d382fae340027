//! Throughput benchmark on a real model, printing one JSON line per measurement in
//! the same shape as `scripts/bench_hf.py` so the two can be compared side by side.
//!
//! `cargo run --release -p augur-rollout --example bench -- MODEL [forward|generate|all] [--keep-quantized] [--dtype f32|bf16] [--kv-dtype f32|bf16] [--prompts FILE]`
//! - forward: full forward (no grad) at batch 8 x 128 tokens, median of 5 runs.
//! - generate: the first 16 prompts of `--prompts` (default `datasets/bench/generate-16.jsonl`,
//!   the list `scripts/bench_hf.py` uses too) x 8 samples, 128 new tokens, temperature 1.0.
//! - `--keep-quantized`: a GGUF's linear weights stay quantized (QLoRA-style frozen
//!   base) instead of being dequantized to f32; not comparable with transformers' f32.
//! - `--dtype bf16`: frozen weights as bf16 panels on AVX512-BF16 CPUs (`[model] dtype`).
//! - `--kv-dtype bf16`: keys and values cached as bf16 (`[rollout] kv_dtype`).

use std::time::Instant;

use serde_json::json;

use augur_model::{
    load_model, BuildOptions, ForwardOpts, Grad, KvDtype, LogitsAt, StepInput, WeightDtype,
};
use augur_rollout::{ChatTemplate, Engine, Message, SamplingParams};

/// The prompt list shared with `scripts/bench_hf.py`, so both engines see the same batch.
const DEFAULT_PROMPTS: &str = "datasets/bench/generate-16.jsonl";

/// Reads `{"prompt": "..."}` lines; every line must have one.
fn read_prompts(path: &str) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read prompts file {path}: {e}"))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| anyhow::anyhow!("{path}:{}: {e}", i + 1))?;
            v["prompt"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("{path}:{}: no string field \"prompt\"", i + 1))
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    augur_model::mem::keep_freed_memory();
    augur_model::cpu_threads::configure();
    let usage =
        "usage: bench MODEL [forward|generate|all] [--keep-quantized] [--dtype f32|bf16] [--kv-dtype f32|bf16] [--prompts FILE]";
    let mut args = std::env::args().skip(1);
    let model_path = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let (mut which, mut keep_quantized) = ("all".to_owned(), false);
    let mut prompts_path = DEFAULT_PROMPTS.to_owned();
    let mut dtype = WeightDtype::F32;
    let mut kv_dtype = KvDtype::F32;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--keep-quantized" => keep_quantized = true,
            "--prompts" => {
                prompts_path = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--prompts needs a file; {usage}"))?
            }
            "--dtype" => {
                let v = args.next().unwrap_or_default();
                dtype = v
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--dtype: {e}; {usage}"))?
            }
            "--kv-dtype" => {
                let v = args.next().unwrap_or_default();
                kv_dtype = v
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--kv-dtype: {e}; {usage}"))?
            }
            "forward" | "generate" | "all" => which = arg,
            other => anyhow::bail!("unknown argument {other:?}; {usage}"),
        }
    }
    let which = which.as_str();
    let opts = BuildOptions {
        keep_quantized,
        weights: dtype,
        ..Default::default()
    };
    let loaded = load_model(model_path.as_ref(), None, &opts)?;
    let weights = match (keep_quantized, loaded.model.weight_dtype()) {
        (true, _) => "quantized",
        (false, WeightDtype::F32) => "f32",
        (false, WeightDtype::Bf16) => "bf16",
    };
    let (model, tok) = (&loaded.model, &loaded.tokenizer);
    if which == "forward" || which == "all" {
        let rows: Vec<Vec<u32>> = (0..8)
            .map(|r| {
                (0..128)
                    .map(|t| ((r * 131 + t * 17) % 40_000 + 100) as u32)
                    .collect()
            })
            .collect();
        let input = StepInput::left_padded(&rows, tok.pad_id, model.device())?;
        let opts = ForwardOpts {
            adapters: true,
            grad: Grad::Off,
            logits: LogitsAt::All,
        };
        model.forward(&input, None, opts)?;
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                model
                    .forward(&input, None, opts)
                    .map(|_| t.elapsed().as_secs_f64())
            })
            .collect::<Result<_, _>>()?;
        times.sort_by(f64::total_cmp);
        let median = times[2];
        let record = json!({
            "engine": "augur", "weights": weights, "threads": rayon::current_num_threads(),
            "bench": "forward", "batch": 8, "seq": 128, "seconds": median,
            "tokens_per_sec": 1024.0 / median, "peak_rss_kb": augur_model::mem::peak_rss_kb(),
        });
        println!("{record}");
    }
    if which == "generate" || which == "all" {
        let template = ChatTemplate::new(
            tok.chat_template.as_deref(),
            tok.bos_token.as_deref(),
            tok.eos_token.as_deref(),
        )?;
        let prompts = read_prompts(&prompts_path)?
            .iter()
            .take(16)
            .map(|q| Ok(tok.encode(&template.render(&[Message::user(q)], true)?)?))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let params = SamplingParams {
            n: 8,
            temperature: 1.0,
            max_new_tokens: 128,
            seed: 0,
            ..Default::default()
        };
        let mut engine = Engine::new(model, tok);
        engine.kv_dtype = kv_dtype;
        let t = Instant::now();
        let (_, stats) = engine.generate(&prompts, &params, &mut |_| {})?;
        let secs = t.elapsed().as_secs_f64();
        let record = json!({
            "engine": "augur", "weights": weights, "threads": rayon::current_num_threads(),
            "kv_cache": format!("{:?}", model.new_cache_with(1, 1, kv_dtype)?.dtype()).to_lowercase(),
            "bench": "generate", "prompts": prompts.len(), "n": 8, "max_new_tokens": 128,
            "prompt_tokens": prompts.iter().map(Vec::len).sum::<usize>(),
            "generated_tokens": stats.generated_tokens, "seconds": secs,
            "tokens_per_sec": stats.generated_tokens as f64 / secs,
            "prefill_secs": stats.prefill_secs, "sample_secs": stats.sample_secs,
            "peak_rss_kb": augur_model::mem::peak_rss_kb(),
        });
        println!("{record}");
    }
    Ok(())
}
