//! Checkpoints: a PEFT LoRA adapter (`adapter_config.json` + `adapter_model.safetensors`, loadable by
//! Python `peft`), the optimizer state, the trainer state (step, data cursor, seeds) and the resolved
//! config. The run folder ([`crate::run_dir::RunDir`]) writes a checkpoint into a partial folder and
//! renames it into place, so a checkpoint is complete or absent; [`check_complete`] names the
//! missing file of a folder that is not a whole checkpoint (e.g. one saved by an older version
//! that was killed while saving).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Var};
use serde::{Deserialize, Serialize};

use crate::optim::FusedAdamW;
use crate::{Error, Result};

pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
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

/// PEFT's `adapter_config.json` fields that describe our adapters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeftConfig {
    pub r: usize,
    pub lora_alpha: f64,
    pub target_modules: Vec<String>,
    pub base_model_name_or_path: String,
    pub peft_type: String,
    pub task_type: String,
    pub lora_dropout: f64,
    pub bias: String,
    pub fan_in_fan_out: bool,
    pub inference_mode: bool,
}

impl PeftConfig {
    pub fn new(r: usize, lora_alpha: f64, target_modules: Vec<String>, base: String) -> Self {
        Self {
            r,
            lora_alpha,
            target_modules,
            base_model_name_or_path: base,
            peft_type: "LORA".into(),
            task_type: "CAUSAL_LM".into(),
            lora_dropout: 0.0,
            bias: "none".into(),
            fan_in_fan_out: false,
            inference_mode: true,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.into(),
        source,
    }
}

pub use augur_model::atomic::{save_tensors_atomic, write_atomic};

/// Writes the PEFT adapter: `vars` are `(PEFT name, variable)` as from `DecoderModel::lora_vars`.
pub fn save_adapter(dir: &Path, cfg: &PeftConfig, vars: &[(String, Var)]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let json = serde_json::to_vec_pretty(cfg).map_err(|e| Error::Adapter(e.to_string()))?;
    write_atomic(&dir.join(ADAPTER_CONFIG), &json)?;
    let tensors = vars
        .iter()
        .map(|(n, v)| {
            Ok((
                n.clone(),
                v.as_tensor().to_device(&Device::Cpu)?.contiguous()?,
            ))
        })
        .collect::<Result<HashMap<_, _>>>()?;
    Ok(save_tensors_atomic(&dir.join(ADAPTER_WEIGHTS), &tensors)?)
}

/// Reads a PEFT adapter into `vars`: every variable must be present with its shape; keys of
/// other modules are an error (they would be silently ignored otherwise).
pub fn load_adapter(dir: &Path, vars: &[(String, Var)]) -> Result<PeftConfig> {
    let cfg = read_peft_config(dir)?;
    load_adapter_weights(dir, vars)?;
    Ok(cfg)
}

/// Reads `adapter_config.json` from a PEFT adapter folder.
pub fn read_peft_config(dir: &Path) -> Result<PeftConfig> {
    let path = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read(&path).map_err(io(&path))?;
    serde_json::from_slice(&text).map_err(|e| Error::Adapter(format!("{}: {e}", path.display())))
}

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

/// Loads `adapter_model.safetensors` into `vars` (names and shapes must match exactly).
fn load_adapter_weights(dir: &Path, vars: &[(String, Var)]) -> Result<()> {
    let path = dir.join(ADAPTER_WEIGHTS);
    let tensors = load_tensors(&path)?;
    if let Some(extra) = tensors.keys().find(|k| !vars.iter().any(|(n, _)| n == *k)) {
        return Err(Error::Adapter(format!(
            "{}: unexpected tensor {extra:?}",
            path.display()
        )));
    }
    for (name, var) in vars {
        let t = tensors.get(name).ok_or_else(|| {
            Error::Adapter(format!("{}: missing tensor {name:?}", path.display()))
        })?;
        if t.shape() != var.shape() {
            return Err(Error::Adapter(format!(
                "{}: {name}: file has {:?}, model has {:?}",
                path.display(),
                t.dims(),
                var.dims()
            )));
        }
        var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
    }
    Ok(())
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
    if !dir.is_dir() {
        return Err(Error::Checkpoint(format!(
            "{}: no such folder",
            dir.display()
        )));
    }
    match REQUIRED.iter().find(|f| !dir.join(f).is_file()) {
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

/// Reads a PEFT adapter folder, attaches adapters of its rank/alpha/targets to `model`
/// and loads their weights: how a trained adapter is evaluated or served.
pub fn attach_peft_adapter(
    model: &mut augur_model::DecoderModel,
    dir: &Path,
) -> Result<PeftConfig> {
    let cfg = read_peft_config(dir)?;
    let targets = cfg
        .target_modules
        .iter()
        .map(|t| augur_model::Target::parse(t))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            let path = dir.join(ADAPTER_CONFIG);
            Error::Adapter(format!("{}: target_modules: {e}", path.display()))
        })?;
    let lora = augur_model::LoraConfig {
        rank: cfg.r,
        alpha: cfg.lora_alpha,
        targets,
        seed: 0,
    };
    model.attach_lora(&lora)?;
    load_adapter_weights(dir, &model.lora_vars())?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Tensor};

    #[test]
    fn adapter_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
        ];
        let a = Var::from_tensor(
            &Tensor::arange(0f32, 12., &Device::Cpu)
                .unwrap()
                .reshape((3, 4))
                .unwrap(),
        )
        .unwrap();
        let b = Var::from_tensor(&Tensor::full(0.5f32, (4, 3), &Device::Cpu).unwrap()).unwrap();
        let vars = vec![
            (names[0].to_string(), a.clone()),
            (names[1].to_string(), b.clone()),
        ];
        let cfg = PeftConfig::new(3, 6.0, vec!["q_proj".into()], "base".into());
        save_adapter(dir.path(), &cfg, &vars).unwrap();

        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(ADAPTER_CONFIG)).unwrap())
                .unwrap();
        assert_eq!(json["peft_type"], "LORA");
        assert_eq!(json["task_type"], "CAUSAL_LM");
        assert_eq!(json["r"], 3);
        let file =
            candle_core::safetensors::load(dir.path().join(ADAPTER_WEIGHTS), &Device::Cpu).unwrap();
        let mut keys: Vec<_> = file.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, names);

        let a2 = Var::zeros((3, 4), DType::F32, &Device::Cpu).unwrap();
        let b2 = Var::zeros((4, 3), DType::F32, &Device::Cpu).unwrap();
        let vars2 = vec![
            (names[0].to_string(), a2.clone()),
            (names[1].to_string(), b2.clone()),
        ];
        assert_eq!(load_adapter(dir.path(), &vars2).unwrap(), cfg);
        for (x, y) in [(&a, &a2), (&b, &b2)] {
            let d = (x.as_tensor() - y.as_tensor())
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap();
            assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0);
        }
        assert!(!dir.path().join("adapter_model.safetensors.tmp").exists());

        let wrong = vec![(
            names[0].to_string(),
            Var::zeros((2, 2), DType::F32, &Device::Cpu).unwrap(),
        )];
        assert!(load_adapter(dir.path(), &wrong).is_err());
    }
}
