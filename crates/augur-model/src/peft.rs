//! LoRA adapters in PEFT's format (`adapter_config.json` + `adapter_model.safetensors`, the
//! folder Python `peft` loads): written by the trainers' checkpoints, read back for a resume, a
//! warm start, `generate --adapter` and `export`. It lives with the model because the tensor names
//! are the model's (`DecoderModel::lora_vars`), and every reader of an adapter needs the model
//! crate but not the trainer.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::atomic::{save_tensors_atomic, write_atomic};
use crate::error::{ModelError, Result};
use crate::{DecoderModel, LoraConfig, Target};

/// The adapter's settings file.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// The adapter's weights.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

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
    /// A LoRA config for a causal LM with PEFT's defaults for what augur does not use
    /// (no dropout, no bias, inference mode).
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

fn adapter_error(problem: String) -> ModelError {
    ModelError::Adapter(problem)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.into(),
        source,
    }
}

/// Writes the PEFT adapter: `vars` are `(PEFT name, variable)` as from `DecoderModel::lora_vars`.
pub fn save_adapter(dir: &Path, cfg: &PeftConfig, vars: &[(String, Var)]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let json = serde_json::to_vec_pretty(cfg).map_err(|e| adapter_error(e.to_string()))?;
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
    save_tensors_atomic(&dir.join(ADAPTER_WEIGHTS), &tensors)
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
    serde_json::from_slice(&text).map_err(|e| adapter_error(format!("{}: {e}", path.display())))
}

/// Reads a PEFT adapter folder, attaches adapters of its rank/alpha/targets to `model`
/// and loads their weights: how a trained adapter is evaluated or served.
pub fn attach_peft_adapter(model: &mut DecoderModel, dir: &Path) -> Result<PeftConfig> {
    let cfg = read_peft_config(dir)?;
    let targets = cfg
        .target_modules
        .iter()
        .map(|t| Target::parse(t))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            let path = dir.join(ADAPTER_CONFIG);
            adapter_error(format!("{}: target_modules: {e}", path.display()))
        })?;
    let lora = LoraConfig {
        rank: cfg.r,
        alpha: cfg.lora_alpha,
        targets,
        seed: 0,
    };
    model.attach_lora(&lora)?;
    load_adapter_weights(dir, &model.lora_vars())?;
    Ok(cfg)
}

/// Loads `adapter_model.safetensors` into `vars` (names and shapes must match exactly).
fn load_adapter_weights(dir: &Path, vars: &[(String, Var)]) -> Result<()> {
    let path = dir.join(ADAPTER_WEIGHTS);
    std::fs::metadata(&path).map_err(io(&path))?;
    let tensors: HashMap<String, Tensor> = candle_core::safetensors::load(&path, &Device::Cpu)
        .map_err(|e| ModelError::Io {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })?;
    if let Some(extra) = tensors.keys().find(|k| !vars.iter().any(|(n, _)| n == *k)) {
        return Err(adapter_error(format!(
            "{}: unexpected tensor {extra:?}",
            path.display()
        )));
    }
    for (name, var) in vars {
        let t = tensors
            .get(name)
            .ok_or_else(|| adapter_error(format!("{}: missing tensor {name:?}", path.display())))?;
        if t.shape() != var.shape() {
            return Err(adapter_error(format!(
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
