//! `augur generate`: prompts in, sampled completions with logprobs out (JSONL).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use augur_model::{load_model, BuildOptions, KvDtype, WeightDtype};
use augur_rollout::{ChatTemplate, Engine, Message, SamplingParams};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::rss::peak_rss;

#[derive(clap::Args)]
pub struct Args {
    /// HF model folder, GGUF file, or Hub id `org/name[@revision]`.
    #[arg(long)]
    model: PathBuf,
    /// Folder with tokenizer.json to use instead of the model's own.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// JSONL file: each line has `prompt` (text) or `messages` ([{role, content}]).
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// A prompt given inline (repeatable); combined with --prompts.
    #[arg(long = "prompt")]
    inline: Vec<String>,
    /// Feed `prompt` text as is instead of wrapping it in the chat template.
    #[arg(long)]
    raw: bool,
    /// Samples per prompt.
    #[arg(long, default_value_t = 1)]
    n: usize,
    /// 0 means greedy.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    /// Stop string (repeatable); the text is cut before it.
    #[arg(long = "stop")]
    stop: Vec<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Most rows decoded together.
    #[arg(long, default_value_t = 256)]
    max_batch_rows: usize,
    /// PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) to apply,
    /// or one on the Hub: `hub:org/name[@revision][/subdir]`.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// `cpu`, `cuda` or `cuda:N` (GPU needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Keep GGUF weights quantized.
    #[arg(long)]
    keep_quantized: bool,
    /// Precision of the frozen weights on the CPU: `f32`, or `bf16` on CPUs with AVX512-BF16
    /// (elsewhere f32 with a warning); like `[model] dtype` of the trainers.
    #[arg(long, default_value = "f32")]
    dtype: WeightDtype,
    /// Precision of the KV cache: `f32`, or `bf16` (half the cache memory and decode reads, at
    /// bf16 rounding of keys and values; CPU only, elsewhere the model's dtype with a
    /// warning); like `[rollout] kv_dtype` of `augur grpo`.
    #[arg(long, default_value = "f32")]
    kv_dtype: KvDtype,
    /// Output JSONL (default: stdout).
    #[arg(long)]
    output: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let params = SamplingParams {
        n: args.n,
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        min_p: args.min_p,
        repetition_penalty: args.repetition_penalty,
        max_new_tokens: args.max_new_tokens,
        stop_token_ids: Vec::new(),
        stop_strings: args.stop.clone(),
        seed: args.seed,
    };
    params.validate()?;
    if let Some(out) = &args.output {
        crate::output::check_writable("--output", out)?;
    }
    let mut inputs = match &args.prompts {
        Some(p) => read_prompts(p)?,
        None => Vec::new(),
    };
    inputs.extend(args.inline.iter().map(|p| json!({ "prompt": p })));
    if inputs.is_empty() {
        bail!("no prompts: give --prompts FILE.jsonl or --prompt TEXT");
    }
    let device = augur_train::grpo::config::parse_device(&args.device)
        .map_err(|why| anyhow::anyhow!("--device {:?}: {why}", args.device))?;
    let opts = BuildOptions {
        keep_quantized: args.keep_quantized,
        device,
        weights: args.dtype,
        ..Default::default()
    };
    let model = augur_hub::model_path(&args.model)?;
    let mut loaded = load_model(&model, args.tokenizer.as_deref(), &opts)?;
    if let Some(dir) = &args.adapter {
        let dir = &augur_hub::checkpoint_path(dir)?;
        augur_model::peft::attach_peft_adapter(&mut loaded.model, dir)
            .with_context(|| format!("adapter {}", dir.display()))?;
    }
    let tok = &loaded.tokenizer;
    let template = ChatTemplate::new(
        tok.chat_template.as_deref(),
        tok.bos_token.as_deref(),
        tok.eos_token.as_deref(),
    )?;
    let prompts = inputs
        .iter()
        .enumerate()
        .map(|(i, v)| -> anyhow::Result<Vec<u32>> {
            let text =
                prompt_text(v, &template, args.raw).with_context(|| format!("prompt {i}"))?;
            Ok(tok.encode(&text)?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut engine = Engine::new(&loaded.model, tok);
    engine.max_batch_rows = args.max_batch_rows;
    engine.kv_dtype = args.kv_dtype;
    if let (_, Some(why)) = args
        .kv_dtype
        .resolve(loaded.model.dtype(), loaded.model.device())
    {
        eprintln!("warning: {why}");
    }
    let bar = ProgressBar::new((prompts.len() * params.n * params.max_new_tokens) as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} tokens ({per_sec}) {elapsed}",
    )?);
    let (samples, stats) = engine.generate(&prompts, &params, &mut |n| bar.inc(n as u64))?;
    bar.finish_and_clear();

    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    for s in &samples {
        let mut line = serde_json::to_value(s)?;
        if let Some(id) = inputs[s.prompt_index].get("id") {
            line["id"] = id.clone();
        }
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    eprintln!(
        "{} samples, {} prompt + {} generated tokens, {:.1} tok/s (prefill {:.2}s, decode {:.2}s), peak RSS {}",
        samples.len(),
        stats.prefill_tokens,
        stats.generated_tokens,
        stats.tokens_per_sec(),
        stats.prefill_secs,
        stats.decode_secs,
        peak_rss()
    );
    Ok(())
}

fn read_prompts(path: &PathBuf) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: invalid JSON", path.display(), i + 1))
        })
        .collect()
}

/// The text to tokenize for one input line.
fn prompt_text(v: &Value, template: &ChatTemplate, raw: bool) -> anyhow::Result<String> {
    if let Some(msgs) = v.get("messages") {
        let messages: Vec<Message> =
            serde_json::from_value(msgs.clone()).context("field `messages`")?;
        return Ok(template.render(&messages, true)?);
    }
    let Some(prompt) = v.get("prompt").and_then(Value::as_str) else {
        bail!("needs a `prompt` string or a `messages` list");
    };
    Ok(match raw {
        true => prompt.to_string(),
        false => template.render(&[Message::user(prompt)], true)?,
    })
}
