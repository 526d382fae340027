//! The flags `augur grpo` and `augur sft` share: where a run's configuration comes from, and how
//! a run may continue. One definition, so the two commands cannot drift apart.

use std::path::PathBuf;

use augur_train::launch::{prepare, RunConfig};
use augur_train::run_dir::Launch;

#[derive(clap::Args)]
pub struct RunArgs {
    /// Run configuration (TOML; see configs/, e.g. quickstart.toml or sft-gsm8k-smollm2.toml).
    /// With --resume and no --config, the checkpoint's own `config.toml` is used and the run
    /// continues in the checkpoint's parent folder.
    #[arg(long, required_unless_present = "resume")]
    config: Option<PathBuf>,
    /// Override a config value, e.g. `--set rollout.group_size=4` or `--set
    /// selection.method=uds` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Continue from a checkpoint folder (`<run>/checkpoint-<step>`, or one on the Hub:
    /// `hub:org/name[@revision][/subdir]`); add `--set algorithm.steps=N` (grpo) or `--set
    /// train.steps=N` (sft) to train further than the original run.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Replace what is in the run folder's way: another run (fresh start), or checkpoints
    /// after the resumed step (resume). Without it such a folder is refused.
    #[arg(long)]
    overwrite: bool,
}

impl RunArgs {
    /// The run's configuration and folder, resolved as `augur_train::launch::prepare` does.
    pub fn prepare<C: RunConfig>(&self) -> anyhow::Result<(C, Launch)> {
        Ok(prepare(
            self.config.as_deref(),
            self.resume.as_deref(),
            &self.set,
            self.overwrite,
        )?)
    }
}
