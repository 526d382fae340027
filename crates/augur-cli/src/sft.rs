//! `augur sft`: supervised fine-tuning of LoRA adapters from a TOML config, with online batch
//! selection, and a progress bar on terminals (one summary line per step either way).

use crate::progress::StepProgress;
use crate::run_args::RunArgs;
use augur_train::sft::{run_with, SftConfig};

/// `augur sft` takes only the shared run flags.
pub type Args = RunArgs;

pub fn run_cmd(args: Args) -> anyhow::Result<()> {
    let (cfg, launch): (SftConfig, _) = args.prepare()?;
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
