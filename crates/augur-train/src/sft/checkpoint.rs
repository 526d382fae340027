//! SFT checkpoints: the PEFT adapter, optimizer state, trainer state (step, data cursor) and
//! config in `augur grpo`'s file layout (so `augur export`, `augur generate --adapter` and
//! `model.adapter` read them), plus the UDS diversity buffer. The run folder
//! ([`crate::run_dir::RunDir`]) writes it into a hidden partial folder and renames it into
//! place, so `checkpoint-<step>` is complete or absent.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Var};
use serde::{Deserialize, Serialize};

use super::uds::DiversityBuffer;
use augur_model::peft::{load_adapter, save_adapter, PeftConfig};

use crate::grpo::checkpoint::{
    save_tensors_atomic, write_atomic, CONFIG, OPTIMIZER, TRAINER_STATE,
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
    pub peft: &'a PeftConfig,
    pub vars: &'a [(String, Var)],
    pub optimizer: &'a FusedAdamW,
    pub state: &'a SftState,
    pub config_toml: &'a str,
    pub buffer: &'a DiversityBuffer,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.into(),
        source,
    }
}

/// Writes a full checkpoint into `dir` (the run folder's partial folder, renamed into place
/// by [`crate::run_dir::RunDir::save_checkpoint`] once this returns).
pub fn save(dir: &Path, parts: &Parts) -> Result<()> {
    save_adapter(dir, parts.peft, parts.vars)?;
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
    let path = dir.join(TRAINER_STATE);
    let text = std::fs::read(&path).map_err(io(&path))?;
    serde_json::from_slice(&text).map_err(|e| Error::Checkpoint(format!("{}: {e}", path.display())))
}

/// Restores adapter weights, optimizer state and the UDS buffer from `dir`; returns the state.
pub fn load(
    dir: &Path,
    vars: &[(String, Var)],
    optimizer: &mut FusedAdamW,
    buffer: &mut DiversityBuffer,
) -> Result<SftState> {
    load_adapter(dir, vars)?;
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
