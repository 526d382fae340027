//! `augur sft`: supervised fine-tuning of LoRA adapters from a TOML config, with online batch
//! selection, and a progress bar on terminals (one summary line per step either way).

use std::path::PathBuf;

use crate::progress::StepProgress;
use anyhow::bail;
use augur_train::policy::fetch_hub_model;
use augur_train::sft::{run_with, summary_line, SftConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Run configuration (TOML; see configs/sft-gsm8k-smollm2.toml). With --resume and no
    /// --config, the checkpoint's own `config.toml` is used.
    #[arg(long, required_unless_present = "resume")]
    config: Option<PathBuf>,
    /// Override a config value, e.g. `--set selection.method=uds` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Continue from a checkpoint folder (`<run>/checkpoint-<step>`); add
    /// `--set train.steps=N` to train further than the original run.
    #[arg(long)]
    resume: Option<PathBuf>,
}

pub fn run_cmd(args: Args) -> anyhow::Result<()> {
    let config = match (&args.config, &args.resume) {
        (Some(c), _) => c.clone(),
        (None, Some(r)) => r.join("config.toml"),
        (None, None) => bail!("give --config FILE, or --resume CHECKPOINT"),
    };
    let mut cfg = SftConfig::load(&config, &args.set)?;
    fetch_hub_model(&mut cfg.model)?;
    let progress = StepProgress::new(cfg.train.steps, cfg.logging.print)?;
    let summary = run_with(&cfg, args.resume.as_deref(), &mut |line| {
        let message = line["loss"].as_f64().map(|l| format!("loss {l:.4}"));
        progress.step(line, message, || summary_line(line));
    })?;
    progress.finish(
        summary.steps,
        &cfg.metrics_path(),
        &summary.final_checkpoint,
    );
    Ok(())
}
