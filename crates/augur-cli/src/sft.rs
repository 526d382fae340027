//! `augur sft`: supervised fine-tuning of LoRA adapters from a TOML config, with online batch
//! selection, and a progress bar on terminals (one summary line per step either way).

use std::path::PathBuf;

use crate::progress::StepProgress;
use augur_train::run_dir::prepare;
use augur_train::sft::{run_with, SftConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Run configuration (TOML; see configs/sft-gsm8k-smollm2.toml). With --resume and no
    /// --config, the checkpoint's own `config.toml` is used and the run continues in the
    /// checkpoint's parent folder.
    #[arg(long, required_unless_present = "resume")]
    config: Option<PathBuf>,
    /// Override a config value, e.g. `--set selection.method=uds` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Continue from a checkpoint folder (`<run>/checkpoint-<step>`, or one on the Hub:
    /// `hub:org/name[@revision][/subdir]`); add `--set train.steps=N` to train further than the
    /// original run.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Replace what is in the run folder's way: another run (fresh start), or checkpoints
    /// after the resumed step (resume). Without it such a folder is refused.
    #[arg(long)]
    overwrite: bool,
}

pub fn run_cmd(args: Args) -> anyhow::Result<()> {
    let (cfg, launch): (SftConfig, _) = prepare(
        args.config.as_deref(),
        args.resume.as_deref(),
        &args.set,
        args.overwrite,
    )?;
    let progress = StepProgress::new(cfg.train.steps, cfg.logging.print)?;
    let summary = run_with(&cfg, &launch, &mut |line| {
        let message = line.train.as_ref().map(|t| format!("loss {:.4}", t.loss));
        progress.step(line.step, message, || line.summary());
    })?;
    progress.finish(
        summary.steps,
        &cfg.metrics_path(),
        &summary.final_checkpoint,
    );
    Ok(())
}
