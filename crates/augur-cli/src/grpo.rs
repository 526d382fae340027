//! `augur grpo`: GRPO training of LoRA adapters from a TOML config.

use std::path::PathBuf;

use augur_train::grpo::{run, GrpoConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Run configuration (TOML; see configs/quickstart.toml).
    #[arg(long)]
    config: PathBuf,
    /// Override a config value, e.g. `--set rollout.group_size=4` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Continue from a checkpoint folder (`<run>/checkpoint-<step>`).
    #[arg(long)]
    resume: Option<PathBuf>,
}

pub fn run_cmd(args: Args) -> anyhow::Result<()> {
    let cfg = GrpoConfig::load(&args.config, &args.set)?;
    let summary = run(&cfg, args.resume.as_deref())?;
    eprintln!(
        "{} steps; metrics in {}; adapter in {}",
        summary.steps,
        cfg.metrics_path().display(),
        summary.final_checkpoint.display()
    );
    Ok(())
}
