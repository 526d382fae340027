//! `augur grpo`: GRPO training of LoRA adapters from a TOML config, with a progress bar on
//! terminals (one summary line per step either way).

use std::path::PathBuf;

use anyhow::bail;
use augur_hub::HubId;
use augur_train::grpo::config::ModelSection;
use augur_train::grpo::{run_with, summary_line, GrpoConfig, Launch};
use indicatif::{ProgressBar, ProgressStyle};

use crate::rss::peak_rss;

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
    let resume = args
        .resume
        .as_deref()
        .map(augur_hub::checkpoint_path)
        .transpose()?;
    let mut cfg = match (&args.config, &resume) {
        (Some(c), _) => GrpoConfig::load(c, &args.set)?,
        (None, Some(r)) => GrpoConfig::load_for_resume(r, &args.set)?,
        (None, None) => bail!("give --config FILE, or --resume CHECKPOINT"),
    };
    hub_model(&mut cfg.model)?;
    let launch = Launch {
        resume,
        overwrite: args.overwrite,
    };
    let bar = ProgressBar::new(cfg.algorithm.steps);
    bar.set_style(ProgressStyle::with_template(
        "{bar:30} step {pos}/{len}  {elapsed} elapsed, ~{eta} left  {msg}",
    )?);
    let summary = run_with(&cfg, &launch, &mut |line| {
        if let Some(step) = line["step"].as_u64() {
            bar.set_position(step);
        }
        if let Some(r) = line["reward_mean"].as_f64() {
            bar.set_message(format!("reward {r:.3}"));
        }
        if cfg.logging.print {
            match bar.is_hidden() {
                true => eprintln!("{}", summary_line(line)),
                false => bar.println(summary_line(line)),
            }
        }
    })?;
    bar.finish_and_clear();
    eprintln!(
        "{} steps; metrics in {}; adapter in {}; peak RSS {}",
        summary.steps,
        cfg.metrics_path().display(),
        summary.final_checkpoint.display(),
        peak_rss()
    );
    Ok(())
}

/// `[model] path` may name a Hub model (`org/name[@revision]`): it is fetched into the Hub
/// cache and the run uses the local copy; the repo id becomes the adapter's base model name
/// (PEFT's `base_model_name_or_path`) unless `[model] name` is set.
fn hub_model(model: &mut ModelSection) -> anyhow::Result<()> {
    let local = augur_hub::model_path(&model.path)?;
    if local != model.path {
        if let (None, Some(Ok(id))) = (&model.name, model.path.to_str().map(HubId::parse)) {
            model.name = Some(id.repo);
        }
        model.path = local;
    }
    Ok(())
}
