//! Helpers shared by the model crate's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use augur_model::weights::SafetensorsSource;
use augur_model::{BuildOptions, DecoderModel, LoraConfig, ModelConfig, Target, WeightDtype};
use candle_core::{DType, Device, Tensor};

pub mod shared_rows;

/// `tests/fixtures/parity/{arch}` at the repo root.
pub fn fixture_dir(arch: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/parity")
        .join(arch)
}

/// Builds a fixture model from its HF folder.
pub fn fixture_model(arch: &str, dtype: DType) -> DecoderModel {
    fixture_model_with(arch, dtype, WeightDtype::F32)
}

/// Builds a fixture model from its HF folder with frozen weights at `weights` precision.
pub fn fixture_model_with(arch: &str, dtype: DType, weights: WeightDtype) -> DecoderModel {
    let dir = fixture_dir(arch);
    let cfg = ModelConfig::from_hf_file(&dir.join("config.json")).unwrap();
    let mut src = SafetensorsSource::open_dir(&dir, &Device::Cpu).unwrap();
    let opts = BuildOptions {
        dtype,
        weights,
        max_positions: Some(64),
        ..Default::default()
    };
    DecoderModel::build(cfg, &mut src, &opts).unwrap()
}

/// Attaches rank-`rank` LoRA adapters (alpha = 2 * rank, so a scale of 2) to every
/// projection of `model`, initialised from `seed` (`lora_B` is zero, as after any attach).
pub fn attach_lora_everywhere(model: &mut DecoderModel, rank: usize, seed: u64) {
    model
        .attach_lora(&LoraConfig {
            rank,
            alpha: 2.0 * rank as f64,
            targets: Target::ALL.to_vec(),
            seed,
        })
        .unwrap();
}

/// The expected tensors written by `scripts/make-parity-fixtures.py`.
pub fn expected(arch: &str) -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture_dir(arch).join("expected.safetensors"), &Device::Cpu)
        .unwrap()
}

/// Rows of an i64 `[B, T]` tensor as u32 vectors, dropping entries where `mask` is 0.
pub fn unpadded_rows(ids: &Tensor, mask: &Tensor) -> Vec<Vec<u32>> {
    let ids = ids.to_vec2::<i64>().unwrap();
    let mask = mask.to_vec2::<i64>().unwrap();
    ids.iter()
        .zip(&mask)
        .map(|(r, m)| {
            r.iter()
                .zip(m)
                .filter(|(_, &m)| m == 1)
                .map(|(&t, _)| t as u32)
                .collect()
        })
        .collect()
}

/// Max |a - b| over all elements.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// The SmolLM2 GGUF fetched by `scripts/fetch-assets.sh`, if present.
pub fn smollm2_gguf() -> Option<PathBuf> {
    let cache = std::env::var_os("AUGUR_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/augur")))?;
    let p = cache.join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} missing; run scripts/fetch-assets.sh",
            p.display()
        );
        None
    }
}

/// Whether this machine runs `[model] dtype = "bf16"` (AVX512-BF16); prints a skip note if not.
pub fn bf16_available() -> bool {
    let (got, why) = WeightDtype::Bf16.resolve(&Device::Cpu);
    if let Some(why) = why {
        eprintln!("SKIPPED: {why}");
    }
    got == WeightDtype::Bf16
}
