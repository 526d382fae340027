//! Hugging Face Hub access for augur: model ids (`org/name[@revision]`) resolved to local
//! folders through the shared Hub cache, checkpoints fetched from (`hub:org/name[/subdir]`)
//! and pushed to the Hub with a model card, and dataset splits
//! (`hub:org/name[@revision]:[config/]split`) fetched as their Parquet or JSONL files.
//!
//! Downloads go through the `hf-hub` crate (ranged, resumable transfers into the Python cache
//! layout); its 0.4 line reads neither `HF_TOKEN` nor `HF_HUB_OFFLINE`, so [`Hub::from_env`]
//! reads them and passes them on. Push speaks the Hub's commit API directly, because that
//! line has no upload support.

mod background;
mod card;
mod dataset;
mod download;
mod error;
#[cfg(feature = "fake-hub")]
pub mod fake;
mod hub;
mod id;
mod push;

use std::path::{Path, PathBuf};

pub use background::BackgroundPush;
pub use card::model_card;
pub use error::{HubError, Result};
pub use hub::Hub;
pub use id::{HubDataset, HubFolder, HubId, RepoKind, HUB_PREFIX};
pub use push::{PushOptions, PushSummary};

/// The local path for a model argument (`--model`, `[model] path`, `augur inspect`): an
/// existing file or folder is itself; `org/name[@revision]`, or a Hub-cache snapshot path from
/// another machine, is downloaded (or found in the cache) through [`Hub::from_env`]; anything
/// else is returned unchanged for the loader to report.
pub fn model_path(spec: &Path) -> Result<PathBuf> {
    if spec.exists() {
        return Ok(spec.to_path_buf());
    }
    let id = match (
        spec.to_str().map(HubId::parse),
        HubId::from_cache_path(spec),
    ) {
        (Some(Ok(id)), _) | (_, Some(id)) => id,
        _ => return Ok(spec.to_path_buf()),
    };
    Hub::from_env()
        .model_folder(&id)
        .map_err(|e| HubError::NotLocal {
            spec: spec.display().to_string(),
            hub: Box::new(e),
        })
}

/// The local folder for a `--resume` argument: `hub:org/name[@revision][/subdir]` is fetched
/// into the Hub cache; anything else is a local path and returned unchanged.
pub fn checkpoint_path(spec: &Path) -> Result<PathBuf> {
    match spec.to_str().and_then(|s| s.strip_prefix(HUB_PREFIX)) {
        Some(rest) => Hub::from_env().folder(&HubFolder::parse(rest)?),
        None => Ok(spec.to_path_buf()),
    }
}
