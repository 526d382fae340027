//! What an SFT run trains: LoRA adapters (the default), or with `[lora] enabled = false` every
//! weight of the model (full fine-tuning, for small models: the optimizer keeps two moments
//! per weight in host memory). Each kind has its own checkpoint files:
//!
//! - LoRA: a PEFT adapter (`adapter_config.json`, `adapter_model.safetensors`), which `augur
//!   export`, `augur generate --adapter` and `[model] adapter` read.
//! - Full: the whole model as an HF folder (`model.safetensors`, `config.json`, tokenizer
//!   files), so a checkpoint is itself a model for `augur generate --model` and `augur export`.

use std::collections::HashMap;
use std::path::Path;

use augur_model::peft::{load_adapter, save_adapter, PeftConfig, ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use augur_model::{load_model, BuildOptions, LoadedModel};
use candle_core::{Device, Tensor, Var};

use crate::grpo::config::{LoraSection, ModelSection};
use crate::policy::{load_policy, Policy};
use crate::{Error, Result};

/// A full checkpoint's weights file (HF layout).
pub const MODEL_WEIGHTS: &str = "model.safetensors";
/// A full checkpoint's HF model config.
pub const MODEL_CONFIG: &str = "config.json";

/// Which weights a run trains.
pub enum Trained {
    /// LoRA adapters, saved as a PEFT adapter with this config.
    Lora(PeftConfig),
    /// Every weight, saved as an HF model folder.
    Full,
}

/// The model of an SFT run with its trainable variables.
pub struct TrainedModel {
    pub loaded: LoadedModel,
    pub trained: Trained,
    /// The trainable variables with their saved names (PEFT names, or HF tensor names).
    pub vars: Vec<(String, Var)>,
}

/// Loads `[model]` and makes the `[lora]` adapters, or with `lora.enabled = false` every
/// weight, trainable.
pub fn load(model: &ModelSection, lora: &LoraSection) -> Result<TrainedModel> {
    if lora.enabled {
        let Policy { loaded, peft } = load_policy(model, lora)?;
        let vars = loaded.model.lora_vars();
        return Ok(TrainedModel {
            loaded,
            trained: Trained::Lora(peft),
            vars,
        });
    }
    let opts = BuildOptions {
        device: model.device()?,
        ..Default::default()
    };
    let mut loaded = load_model(&model.path, model.tokenizer.as_deref(), &opts)?;
    let vars = loaded.model.make_trainable()?;
    Ok(TrainedModel {
        loaded,
        trained: Trained::Full,
        vars,
    })
}

impl TrainedModel {
    /// Writes the trained weights into the checkpoint folder `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        match &self.trained {
            Trained::Lora(peft) => save_adapter(dir, peft, &self.vars)?,
            Trained::Full => self.loaded.model.export_hf(&self.loaded.tokenizer, dir)?,
        }
        Ok(())
    }

    /// Restores the trained weights saved in `dir`; a checkpoint of the other kind is an
    /// error saying so.
    pub fn restore(&self, dir: &Path) -> Result<()> {
        let lora_files = dir.join(ADAPTER_CONFIG).is_file();
        match (&self.trained, lora_files) {
            (Trained::Lora(_), true) => {
                load_adapter(dir, &self.vars)?;
                Ok(())
            }
            (Trained::Full, false) => restore_full(&dir.join(MODEL_WEIGHTS), &self.vars),
            (Trained::Lora(_), false) => Err(Error::Checkpoint(format!(
                "{} holds fully fine-tuned weights, not a LoRA adapter: resume it with \
                 [lora] enabled = false",
                dir.display()
            ))),
            (Trained::Full, true) => Err(Error::Checkpoint(format!(
                "{} holds a LoRA adapter: resume it with [lora] enabled = true",
                dir.display()
            ))),
        }
    }
}

/// Sets every variable from the tensor of its name in the safetensors file `path`.
fn restore_full(path: &Path, vars: &[(String, Var)]) -> Result<()> {
    let saved: HashMap<String, Tensor> = candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| Error::Checkpoint(format!("{}: {e}", path.display())))?;
    for (name, var) in vars {
        let t = saved.get(name).ok_or_else(|| {
            Error::Checkpoint(format!("{}: missing tensor {name:?}", path.display()))
        })?;
        if t.shape() != var.shape() {
            return Err(Error::Checkpoint(format!(
                "{}: {name:?} has shape {:?}, the model's is {:?}",
                path.display(),
                t.dims(),
                var.dims()
            )));
        }
        var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
    }
    Ok(())
}

/// The files a checkpoint holds for its trained weights, either kind: the first missing file
/// of the kind `dir` looks like (LoRA unless it has a model config), if any.
pub fn missing_weights_file(dir: &Path) -> Option<&'static str> {
    let files: &[&'static str] = match dir.join(MODEL_CONFIG).is_file() {
        true => &[MODEL_CONFIG, MODEL_WEIGHTS],
        false => &[ADAPTER_CONFIG, ADAPTER_WEIGHTS],
    };
    files.iter().copied().find(|f| !dir.join(f).is_file())
}
