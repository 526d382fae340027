//! `augur`: parses arguments and calls the library crates; no logic lives here.

mod ablate;
mod export;
mod generate;
mod grpo;
mod inspect;
mod output;
mod progress;
mod push;
mod rss;
mod run_args;
mod sampler;
mod score;
mod sft;

use clap::{Parser, Subcommand};

/// RL post-training for Qwen-class models on candle.
#[derive(Parser)]
#[command(name = "augur", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print architecture, parameter counts, dtype, tokenizer and chat-template facts.
    Inspect(inspect::Args),
    /// Sample completions for prompts (JSONL in, JSONL out).
    Generate(generate::Args),
    /// Score completions with a verifier (math, countdown, code).
    Score(score::Args),
    /// Train LoRA adapters with GRPO from a TOML config.
    Grpo(grpo::Args),
    /// Fine-tune LoRA adapters on worked examples (SFT), with online batch selection.
    Sft(sft::Args),
    /// Serve a prompt sampler over JSON Lines on stdin/stdout.
    Sampler(sampler::Args),
    /// Merge a LoRA adapter into its base model and write an HF folder.
    Export(export::Args),
    /// Compare samplers side by side: one GRPO run per sampler × seed (`--simulate`: a simulated learner).
    Ablate(ablate::Args),
    /// Push a checkpoint folder to a Hugging Face Hub model repo, with a model card.
    Push(push::Args),
}

fn main() {
    let cli = Cli::parse();
    augur_model::mem::keep_freed_memory();
    augur_model::cpu_threads::configure();
    let result = match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Score(a) => score::run(a),
        Command::Grpo(a) => grpo::run_cmd(a),
        Command::Sft(a) => sft::run_cmd(a),
        Command::Sampler(a) => sampler::run(a),
        Command::Ablate(a) => ablate::run(a),
        Command::Export(a) => export::run(a),
        Command::Push(a) => push::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {}", chain(&e));
        std::process::exit(1);
    }
}

/// The error and its causes joined by `: `, leaving out a cause whose text the message already
/// carries (most errors name their cause in their own message).
fn chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out = format!("{out}: {text}");
        }
    }
    out
}
