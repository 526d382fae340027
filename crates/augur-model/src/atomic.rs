//! Atomic file writes: a temporary file beside the target, then a rename, so an
//! interrupted write never leaves a truncated checkpoint or export behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;

use crate::error::{ModelError, Result};

/// `dir/name.ext.tmp` for `dir/name.ext`.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn rename(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::rename(tmp, path).map_err(|source| ModelError::Io {
        path: path.into(),
        source,
    })
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes).map_err(|source| ModelError::Io {
        path: tmp.clone(),
        source,
    })?;
    rename(&tmp, path)
}

/// Saves named tensors as safetensors at `path` atomically.
pub fn save_tensors_atomic(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let tmp = tmp_path(path);
    // candle's error does not name the file (e.g. a full disk): say which one.
    candle_core::safetensors::save(tensors, &tmp).map_err(|e| ModelError::Checkpoint {
        path: tmp.clone(),
        problem: e.to_string(),
    })?;
    rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/adapter.safetensors");
        let t = Tensor::zeros(2, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let err = save_tensors_atomic(&path, &[("a".to_string(), t)].into())
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing/adapter.safetensors.tmp"), "{err}");
        let err = write_atomic(&dir.path().join("missing/x.json"), b"{}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing/x.json.tmp"), "{err}");
    }
}
