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
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let summary = score_jsonl(
        args.task,
        &args.input,
        &args.output,
        &ScoreOptions::default(),
    )?;
    println!("{summary:?}");
    Ok(())
}
