//! The trainable policy every trainer starts from: the base model of `[model]` with the
//! `[lora]` adapters attached (and, with `model.adapter`, their weights taken from a saved
//! PEFT adapter), plus the PEFT config its checkpoints are written with.

use augur_model::peft::{load_adapter, read_peft_config, PeftConfig};
use augur_model::{load_model, BuildOptions, LoadedModel, LoraConfig, Target};

use crate::grpo::config::{LoraSection, ModelSection};
use crate::{Error, Result};

/// A loaded model with adapters attached, and how to describe them to PEFT.
pub struct Policy {
    pub loaded: LoadedModel,
    pub peft: PeftConfig,
}

/// Loads `[model]`, attaches `[lora]` adapters and, when `model.adapter` names a folder,
/// loads its weights into them (a warm start, e.g. GRPO from an SFT adapter). The folder's
/// rank, alpha and targets must equal `[lora]`'s: a different alpha would silently rescale
/// the update, so it is an error naming the field.
pub fn load_policy(model: &ModelSection, lora: &LoraSection) -> Result<Policy> {
    let opts = BuildOptions {
        keep_quantized: model.keep_quantized,
        device: model.device()?,
        ..Default::default()
    };
    let mut loaded = load_model(&model.path, model.tokenizer.as_deref(), &opts)?;
    let targets = lora
        .targets
        .iter()
        .map(|t| Target::parse(t))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    loaded.model.attach_lora(&LoraConfig {
        rank: lora.rank,
        alpha: lora.alpha,
        targets: targets.clone(),
        seed: lora.seed,
    })?;
    let peft = PeftConfig::new(
        lora.rank,
        lora.alpha,
        targets
            .iter()
            .map(|t| t.module_name().to_string())
            .collect(),
        model
            .name
            .clone()
            .unwrap_or_else(|| model.path.display().to_string()),
    );
    if let Some(dir) = &model.adapter {
        check_warm_start(dir, &peft)?;
        load_adapter(dir, &loaded.model.lora_vars())?;
    }
    Ok(Policy { loaded, peft })
}

/// `dir`'s adapter must have the rank, alpha and target set of `want`.
fn check_warm_start(dir: &std::path::Path, want: &PeftConfig) -> Result<()> {
    let have = read_peft_config(dir)?;
    let sorted = |t: &[String]| {
        let mut t = t.to_vec();
        t.sort();
        t
    };
    let mismatch = if have.r != want.r {
        Some(format!("r = {} but [lora] rank = {}", have.r, want.r))
    } else if have.lora_alpha != want.lora_alpha {
        Some(format!(
            "lora_alpha = {} but [lora] alpha = {}",
            have.lora_alpha, want.lora_alpha
        ))
    } else if sorted(&have.target_modules) != sorted(&want.target_modules) {
        Some(format!(
            "target_modules = {:?} but [lora] targets give {:?}",
            have.target_modules, want.target_modules
        ))
    } else {
        None
    };
    match mismatch {
        Some(m) => Err(Error::Config(format!(
            "model.adapter = {}: adapter_config.json has {m}",
            dir.display()
        ))),
        None => Ok(()),
    }
}
