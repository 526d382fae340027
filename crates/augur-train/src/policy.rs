//! The trainable policy every trainer starts from: the base model of `[model]` with the
//! `[lora]` adapters attached (and, with `model.adapter`, their weights taken from a saved
//! PEFT adapter), plus the PEFT config its checkpoints are written with.

use std::path::{Path, PathBuf};

use augur_hub::HubId;
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
        weights: model.dtype,
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
    if let Some(spec) = &model.adapter {
        let dir = adapter_folder(spec)?;
        check_warm_start(&dir, &peft)?;
        load_adapter(&dir, &loaded.model.lora_vars())?;
    }
    Ok(Policy { loaded, peft })
}

/// The local folder of `[model] adapter`: a folder as it is, or a PEFT adapter on the Hub
/// (`hub:org/name[@revision][/subdir]`: a bare adapter repo, or an augur checkpoint folder in
/// one) fetched into the Hub cache.
fn adapter_folder(spec: &Path) -> Result<PathBuf> {
    augur_hub::checkpoint_path(spec)
        .map_err(|e| Error::Config(format!("model.adapter = {}: {e}", spec.display())))
}

/// `[model] path` may name a Hub model (`org/name[@revision]`): it is fetched into the Hub
/// cache (or found there) and `path` becomes the local copy; the repo id becomes the adapter's
/// base model name (PEFT's `base_model_name_or_path`) unless `[model] name` is set. A local
/// path is left as it is.
pub fn fetch_hub_model(model: &mut ModelSection) -> Result<()> {
    let local = augur_hub::model_path(&model.path)
        .map_err(|e| Error::Config(format!("model.path: {e}")))?;
    if local != model.path {
        if let (None, Some(Ok(id))) = (&model.name, model.path.to_str().map(HubId::parse)) {
            model.name = Some(id.repo);
        }
        model.path = local;
    }
    Ok(())
}

/// `dir`'s adapter must have the rank, alpha and target set of `want`.
fn check_warm_start(dir: &Path, want: &PeftConfig) -> Result<()> {
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
