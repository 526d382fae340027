//! Throughput benchmark on a real model, printing one JSON line per measurement in
//! the same shape as `scripts/bench_hf.py` so the two can be compared side by side.
//!
//! `cargo run --release -p augur-rollout --example bench -- MODEL [forward|generate|all] [--keep-quantized]`
//! - forward: full forward (no grad) at batch 8 x 128 tokens, median of 5 runs.
//! - generate: 16 prompts x 8 samples, 128 new tokens, temperature 1.0.
//! - `--keep-quantized`: a GGUF's linear weights stay quantized (QLoRA-style frozen
//!   base) instead of being dequantized to f32; not comparable with transformers' f32.

use std::time::Instant;

use augur_model::{load_model, BuildOptions, ForwardOpts, Grad, LogitsAt, StepInput};
use augur_rollout::{ChatTemplate, Engine, Message, SamplingParams};

const QUESTIONS: [&str; 16] = [
    "What is 12 + 7?",
    "Name a primary color.",
    "What is the capital of Italy?",
    "How many legs does a spider have?",
    "What is 9 times 6?",
    "Write a haiku about rain.",
    "What is the boiling point of water in Celsius?",
    "Give a synonym for happy.",
    "What is 100 divided by 4?",
    "Who wrote Romeo and Juliet?",
    "What planet is known as the red planet?",
    "Spell the word cat backwards.",
    "What is the square root of 81?",
    "Name a fruit that is yellow.",
    "How many days are in a week?",
    "What gas do plants absorb?",
];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model_path = args
        .get(1)
        .ok_or_else(|| anyhow::anyhow!("usage: bench MODEL [forward|generate|all]"))?;
    let which = args
        .iter()
        .skip(2)
        .find(|a| !a.starts_with("--"))
        .map_or("all", String::as_str);
    let keep_quantized = args.iter().any(|a| a == "--keep-quantized");
    let opts = BuildOptions {
        keep_quantized,
        ..Default::default()
    };
    let weights = if keep_quantized { "quantized" } else { "f32" };
    let loaded = load_model(model_path.as_ref(), None, &opts)?;
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
        println!(
            "{{\"engine\":\"augur\",\"weights\":\"{weights}\",\"bench\":\"forward\",\"batch\":8,\"seq\":128,\"seconds\":{median:.4},\"tokens_per_sec\":{:.1}}}",
            1024.0 / median
        );
    }
    if which == "generate" || which == "all" {
        let template = ChatTemplate::new(
            tok.chat_template.as_deref(),
            tok.bos_token.as_deref(),
            tok.eos_token.as_deref(),
        )?;
        let prompts = QUESTIONS
            .iter()
            .map(|q| Ok(tok.encode(&template.render(&[Message::user(*q)], true)?)?))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let params = SamplingParams {
            n: 8,
            temperature: 1.0,
            max_new_tokens: 128,
            seed: 0,
            ..Default::default()
        };
        let t = Instant::now();
        let (_, stats) = Engine::new(model, tok).generate(&prompts, &params, &mut |_| {})?;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{{\"engine\":\"augur\",\"weights\":\"{weights}\",\"bench\":\"generate\",\"prompts\":16,\"n\":8,\"max_new_tokens\":128,\"generated_tokens\":{},\"seconds\":{secs:.2},\"tokens_per_sec\":{:.1},\"prefill_secs\":{:.2},\"sample_secs\":{:.2}}}",
            stats.generated_tokens,
            stats.generated_tokens as f64 / secs,
            stats.prefill_secs,
            stats.sample_secs
        );
    }
    Ok(())
}
