//! `augur score --task math|countdown|code --input IN.jsonl --output OUT.jsonl`.

use std::path::PathBuf;

use augur_reward::{score_jsonl, ScoreOptions, TaskKind};

#[derive(clap::Args)]
pub struct Args {
    /// Verifier: math, countdown or code.
    #[arg(long)]
    task: TaskKind,
    /// JSONL with a completion and a reference per line.
    #[arg(long)]
    input: PathBuf,
    /// Where to write the scored lines.
    #[arg(long)]
    output: PathBuf,
    /// Math: the field holding the reference answer. Default: `final` if present, else
    /// `answer` (a GSM8K-style `... #### x` solution yields `x`).
    #[arg(long)]
    answer_field: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::output::check_writable("--output", &args.output)?;
    let summary = score_jsonl(
        args.task,
        &args.input,
        &args.output,
        args.answer_field.as_deref(),
        &ScoreOptions::default(),
    )?;
    for w in &summary.warnings {
        eprintln!("warning: {w}");
    }
    let share = |n: usize| 100.0 * n as f64 / summary.total.max(1) as f64;
    println!(
        "scored {} lines: {} correct ({:.1}%), mean reward {:.3}; wrote {}",
        summary.total,
        summary.correct,
        share(summary.correct),
        summary.mean_reward,
        args.output.display()
    );
    Ok(())
}
