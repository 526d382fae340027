//! `augur grpo`: GRPO training of LoRA adapters from a TOML config, with a progress bar on
//! terminals (one summary line per step either way).

use std::path::PathBuf;

use crate::progress::StepProgress;
use augur_train::grpo::{run_with, GrpoConfig};
use augur_train::run_dir::prepare;

#[derive(clap::Args)]
pub struct Args {
    /// Run configuration (TOML; see configs/quickstart.toml). With --resume and no --config,
    /// the checkpoint's own `config.toml` is used and the run continues in the checkpoint's
    /// parent folder.
    #[arg(long, required_unless_present = "resume")]
    config: Option<PathBuf>,
    /// Override a config value, e.g. `--set rollout.group_size=4` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Continue from a checkpoint folder (`<run>/checkpoint-<step>`, or one on the Hub:
    /// `hub:org/name[@revision][/subdir]`); add `--set algorithm.steps=N` to train further
    /// than the original run.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Replace what is in the run folder's way: another run (fresh start), or checkpoints
    /// after the resumed step (resume). Without it such a folder is refused.
    #[arg(long)]
    overwrite: bool,
}

pub fn run_cmd(args: Args) -> anyhow::Result<()> {
    let (cfg, launch): (GrpoConfig, _) = prepare(
        args.config.as_deref(),
        args.resume.as_deref(),
        &args.set,
        args.overwrite,
    )?;
    let progress = StepProgress::new(cfg.algorithm.steps, cfg.logging.print)?;
    let summary = run_with(&cfg, &launch, &mut |line| {
        let message = line
            .train
            .as_ref()
            .map(|t| format!("reward {:.3}", t.reward_mean));
        progress.step(line.step, message, || line.summary());
    })?;
    progress.finish(
        summary.steps,
        &cfg.metrics_path(),
        &summary.final_checkpoint,
    );
    Ok(())
}
