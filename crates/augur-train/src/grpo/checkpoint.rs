//! Checkpoints: a PEFT LoRA adapter ([`augur_model::peft`], loadable by Python `peft`), the
//! optimizer state, the trainer state (step, data cursor, seeds) and the resolved
//! config. The run folder ([`crate::run_dir::RunDir`]) writes a checkpoint into a partial folder and
//! renames it into place, so a checkpoint is complete or absent; [`check_complete`] names the
//! missing file of a folder that is not a whole checkpoint (e.g. one saved by an older version
//! that was killed while saving).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Var};
use serde::{Deserialize, Serialize};

use augur_model::peft::{load_adapter, save_adapter, PeftConfig, ADAPTER_CONFIG, ADAPTER_WEIGHTS};

use crate::optim::FusedAdamW;
use crate::{Error, Result};

pub const OPTIMIZER: &str = "optimizer.safetensors";
pub const TRAINER_STATE: &str = "trainer_state.json";
pub const CONFIG: &str = "config.toml";
pub const SAMPLER: &str = "sampler.json";

/// What the loop needs to continue where it stopped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Completed training steps.
    pub step: u64,
    /// Prompts drawn so far (the sampler's state).
    pub data_cursor: u64,
    /// Seed of the prompt order.
    pub data_seed: u64,
    /// Base seed of the rollouts (step `s` samples with `rollout_seed + s`).
    pub rollout_seed: u64,
    /// Completions generated so far.
    pub rollouts_used: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.into(),
        source,
    }
}

pub use augur_model::atomic::{save_tensors_atomic, write_atomic};

/// Reads a safetensors file, naming it in any error.
fn load_tensors(path: &Path) -> Result<HashMap<String, candle_core::Tensor>> {
    if let Err(e) = std::fs::metadata(path) {
        return Err(io(path)(e));
    }
    candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| Error::Io {
        path: path.into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    })
}

/// Everything a checkpoint holds, for [`save_checkpoint`].
pub struct CheckpointParts<'a> {
    pub peft: &'a PeftConfig,
    pub vars: &'a [(String, Var)],
    pub optimizer: &'a FusedAdamW,
    pub state: &'a TrainerState,
    pub config_toml: &'a str,
    /// Prompt-sampler state (`sampler.json`), when a `[sampler]` is configured.
    pub sampler: Option<&'a [u8]>,
}

/// Writes a full checkpoint into `dir`.
pub fn save_checkpoint(dir: &Path, parts: &CheckpointParts) -> Result<()> {
    save_adapter(dir, parts.peft, parts.vars)?;
    save_tensors_atomic(&dir.join(OPTIMIZER), &parts.optimizer.export_state()?)?;
    let state =
        serde_json::to_vec_pretty(parts.state).map_err(|e| Error::Checkpoint(e.to_string()))?;
    write_atomic(&dir.join(TRAINER_STATE), &state)?;
    if let Some(bytes) = parts.sampler {
        write_atomic(&dir.join(SAMPLER), bytes)?;
    }
    Ok(write_atomic(
        &dir.join(CONFIG),
        parts.config_toml.as_bytes(),
    )?)
}

/// The prompt-sampler state saved in `dir`, if any.
pub fn load_sampler_state(dir: &Path) -> Result<Option<Vec<u8>>> {
    let path = dir.join(SAMPLER);
    match std::fs::read(&path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

/// Files every checkpoint holds (`sampler.json` only with a `[sampler]`).
const REQUIRED: [&str; 5] = [
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    OPTIMIZER,
    TRAINER_STATE,
    CONFIG,
];

/// Checks that `dir` is a whole checkpoint, naming the first missing file.
pub fn check_complete(dir: &Path) -> Result<()> {
    check_whole(dir, || {
        REQUIRED.into_iter().find(|f| !dir.join(f).is_file())
    })
}

/// Checks that `dir` is a folder and that `missing` (which looks for the first absent file of
/// a trainer's checkpoint) finds none; the error names the file.
pub(crate) fn check_whole(
    dir: &Path,
    missing: impl FnOnce() -> Option<&'static str>,
) -> Result<()> {
    if !dir.is_dir() {
        return Err(Error::Checkpoint(format!(
            "{}: no such folder",
            dir.display()
        )));
    }
    match missing() {
        None => Ok(()),
        Some(f) => Err(Error::Checkpoint(format!(
            "{} is incomplete: {f} is missing (was the run killed while saving it?); resume from \
             an earlier checkpoint",
            dir.display()
        ))),
    }
}

/// The trainer state saved in `dir`.
pub fn read_trainer_state(dir: &Path) -> Result<TrainerState> {
    read_state_file(dir)
}

/// The `trainer_state.json` in `dir`, as the trainer's own state type `T`.
pub(crate) fn read_state_file<T: serde::de::DeserializeOwned>(dir: &Path) -> Result<T> {
    let path = dir.join(TRAINER_STATE);
    let text = std::fs::read(&path).map_err(io(&path))?;
    serde_json::from_slice(&text).map_err(|e| Error::Checkpoint(format!("{}: {e}", path.display())))
}

/// Restores adapter weights and optimizer state from `dir`; returns the trainer state.
pub fn load_checkpoint(
    dir: &Path,
    vars: &[(String, Var)],
    optimizer: &mut FusedAdamW,
) -> Result<TrainerState> {
    check_complete(dir)?;
    let state = read_trainer_state(dir)?;
    load_adapter(dir, vars)?;
    let path = dir.join(OPTIMIZER);
    optimizer
        .import_state(&load_tensors(&path)?)
        .map_err(|e| Error::Checkpoint(format!("{}: {e}", path.display())))?;
    Ok(state)
}
