//! How `augur grpo` and `augur sft` start from their arguments: which config, which run folder,
//! fresh or resumed. Above both trainers (it knows their configs); the run folder contract
//! itself is [`crate::run_dir`], below them.

use std::path::Path;

use crate::grpo::config::ModelSection;
use crate::grpo::GrpoConfig;
use crate::policy::fetch_hub_model;
use crate::run_dir::Launch;
use crate::sft::SftConfig;
use crate::{Error, Result};

/// A run config that a run command starts from: its own file, or the copy a checkpoint holds.
pub trait RunConfig: Sized {
    /// The config in `path` with `--set` `overrides` applied.
    fn load(path: &Path, overrides: &[String]) -> Result<Self>;
    /// The config of a run resumed from `checkpoint` without a config file.
    fn load_for_resume(checkpoint: &Path, overrides: &[String]) -> Result<Self>;
    /// Its `[model]` section (a Hub id there is resolved to a local folder).
    fn model_mut(&mut self) -> &mut ModelSection;
}

impl RunConfig for GrpoConfig {
    fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        Self::load(path, overrides)
    }
    fn load_for_resume(checkpoint: &Path, overrides: &[String]) -> Result<Self> {
        Self::load_for_resume(checkpoint, overrides)
    }
    fn model_mut(&mut self) -> &mut ModelSection {
        &mut self.model
    }
}

impl RunConfig for SftConfig {
    fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        Self::load(path, overrides)
    }
    fn load_for_resume(checkpoint: &Path, overrides: &[String]) -> Result<Self> {
        Self::load_for_resume(checkpoint, overrides)
    }
    fn model_mut(&mut self) -> &mut ModelSection {
        &mut self.model
    }
}

/// How `augur grpo` and `augur sft` start from their arguments: a `hub:` checkpoint is fetched
/// into the Hub cache, the config is read from `config` (else from the checkpoint's own copy,
/// the run continuing in the checkpoint's parent folder), a Hub model id in `[model] path` is
/// resolved to its local folder, and the [`Launch`] says fresh or resumed.
pub fn prepare<C: RunConfig>(
    config: Option<&Path>,
    resume: Option<&Path>,
    overrides: &[String],
    overwrite: bool,
) -> Result<(C, Launch)> {
    let resume = resume
        .map(|spec| {
            augur_hub::checkpoint_path(spec)
                .map_err(|e| Error::Checkpoint(format!("{}: {e}", spec.display())))
        })
        .transpose()?;
    let mut cfg = match (config, &resume) {
        (Some(c), _) => C::load(c, overrides)?,
        (None, Some(r)) => C::load_for_resume(r, overrides)?,
        (None, None) => {
            return Err(Error::Config(
                "give --config FILE, or --resume CHECKPOINT".into(),
            ))
        }
    };
    fetch_hub_model(cfg.model_mut())?;
    Ok((cfg, Launch { resume, overwrite }))
}
