//! SFT checkpoints: the trained weights ([`super::weights`]: a PEFT adapter, or under full
//! fine-tuning an HF model folder), optimizer state, trainer state (step, data cursor) and
//! config in `augur grpo`'s file layout (so `augur export`, `augur generate --adapter` and
//! `model.adapter` read them), plus the UDS diversity buffer. The run folder
//! ([`crate::run_dir::RunDir`]) writes it into a hidden partial folder and renames it into
//! place, so `checkpoint-<step>` is complete or absent.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::uds::DiversityBuffer;
use super::weights::{missing_weights_file, TrainedModel};

use crate::grpo::checkpoint::{
    check_whole, read_state_file, save_tensors_atomic, write_atomic, CONFIG, OPTIMIZER,
    TRAINER_STATE,
};
use crate::optim::FusedAdamW;
use crate::{Error, Result};

/// The UDS buffer's file (absent when the buffer is empty).
pub const SELECTION: &str = "selection.safetensors";

/// What the loop needs to continue where it stopped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SftState {
    /// Completed optimizer steps.
    pub step: u64,
    /// Examples drawn so far (candidates included): the data order's whole state.
    pub data_cursor: u64,
    /// Examples trained on so far.
    pub samples_trained: u64,
    /// Target tokens trained on so far.
    pub tokens_trained: u64,
}

/// Everything a checkpoint holds.
pub struct Parts<'a> {
    pub weights: &'a TrainedModel,
    pub optimizer: &'a FusedAdamW,
    pub state: &'a SftState,
    pub config_toml: &'a str,
    pub buffer: &'a DiversityBuffer,
}

/// Writes a full checkpoint into `dir` (the run folder's partial folder, renamed into place
/// by [`crate::run_dir::RunDir::save_checkpoint`] once this returns).
pub fn save(dir: &Path, parts: &Parts) -> Result<()> {
    parts.weights.save(dir)?;
    save_tensors_atomic(&dir.join(OPTIMIZER), &parts.optimizer.export_state()?)?;
    let state =
        serde_json::to_vec_pretty(parts.state).map_err(|e| Error::Checkpoint(e.to_string()))?;
    write_atomic(&dir.join(TRAINER_STATE), &state)?;
    write_atomic(&dir.join(CONFIG), parts.config_toml.as_bytes())?;
    if let Some(t) = parts.buffer.to_tensor()? {
        save_tensors_atomic(
            &dir.join(SELECTION),
            &HashMap::from([("sketches".into(), t)]),
        )?;
    }
    Ok(())
}

/// The trainer state saved in `dir`.
pub fn read_state(dir: &Path) -> Result<SftState> {
    read_state_file(dir)
}

/// Files every checkpoint holds besides its weights (`selection.safetensors` only with UDS).
const REQUIRED: [&str; 3] = [OPTIMIZER, TRAINER_STATE, CONFIG];

/// Checks that `dir` is a whole checkpoint, naming the first missing file.
pub fn check_complete(dir: &Path) -> Result<()> {
    check_whole(dir, || {
        missing_weights_file(dir).or_else(|| REQUIRED.into_iter().find(|f| !dir.join(f).is_file()))
    })
}

/// Restores the trained weights, optimizer state and the UDS buffer from `dir`; returns the
/// state.
pub fn load(
    dir: &Path,
    weights: &TrainedModel,
    optimizer: &mut FusedAdamW,
    buffer: &mut DiversityBuffer,
) -> Result<SftState> {
    weights.restore(dir)?;
    let opt = candle_core::safetensors::load(dir.join(OPTIMIZER), &Device::Cpu)?;
    optimizer.import_state(&opt)?;
    let sel = dir.join(SELECTION);
    if sel.exists() {
        let t = candle_core::safetensors::load(&sel, &Device::Cpu)?;
        let sketches = t.get("sketches").ok_or_else(|| {
            Error::Checkpoint(format!("{}: missing tensor \"sketches\"", sel.display()))
        })?;
        buffer.load_tensor(sketches)?;
    }
    read_state(dir)
}
