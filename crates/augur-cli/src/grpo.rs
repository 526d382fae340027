//! `augur grpo`: GRPO training of LoRA adapters from a TOML config, with a progress bar on
//! terminals (one summary line per step either way).

use crate::progress::StepProgress;
use crate::run_args::RunArgs;
use augur_train::grpo::{run_with, GrpoConfig};

/// `augur grpo` takes only the shared run flags.
pub type Args = RunArgs;

pub fn run_cmd(args: Args) -> anyhow::Result<()> {
    let (cfg, launch): (GrpoConfig, _) = args.prepare()?;
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
