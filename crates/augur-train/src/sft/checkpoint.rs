//! SFT checkpoints: the PEFT adapter, optimizer state, trainer state (step, data cursor) and
//! config in `augur grpo`'s file layout (so `augur export`, `augur generate --adapter` and
//! `model.adapter` read them), plus the UDS diversity buffer. A checkpoint is written into
//! `<name>.partial` and renamed into place, so `checkpoint-<step>` is complete or absent.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Var};
use serde::{Deserialize, Serialize};

use super::uds::DiversityBuffer;
use crate::grpo::checkpoint::{
    load_adapter, save_adapter, save_tensors_atomic, write_atomic, PeftConfig, CONFIG, OPTIMIZER,
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

/// Writes a full checkpoint to `dir` (replacing a leftover partial one).
pub fn save(dir: &Path, parts: &Parts) -> Result<()> {
    let mut name = dir.as_os_str().to_owned();
    name.push(".partial");
    let tmp = std::path::PathBuf::from(name);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    save_adapter(&tmp, parts.peft, parts.vars)?;
    save_tensors_atomic(&tmp.join(OPTIMIZER), &parts.optimizer.export_state()?)?;
    let state = serde_json::to_vec_pretty(parts.state).map_err(|e| Error::Config(e.to_string()))?;
    write_atomic(&tmp.join(TRAINER_STATE), &state)?;
    write_atomic(&tmp.join(CONFIG), parts.config_toml.as_bytes())?;
    if let Some(t) = parts.buffer.to_tensor()? {
        save_tensors_atomic(
            &tmp.join(SELECTION),
            &HashMap::from([("sketches".into(), t)]),
        )?;
    }
    // A resumed run can reach a step whose checkpoint a crashed run already wrote: the new
    // one (same step, same state) takes its place, and the old one is removed only after.
    let mut old = dir.as_os_str().to_owned();
    old.push(".replaced");
    let old = std::path::PathBuf::from(old);
    let replacing = dir.exists();
    if replacing {
        std::fs::rename(dir, &old).map_err(io(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(io(dir))?;
    if replacing {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
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
            Error::State(format!("{}: missing tensor \"sketches\"", sel.display()))
        })?;
        buffer.load_tensor(sketches)?;
    }
    let path = dir.join(TRAINER_STATE);
    let text = std::fs::read(&path).map_err(io(&path))?;
    serde_json::from_slice(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}
