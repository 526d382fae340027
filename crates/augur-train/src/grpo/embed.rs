//! Prompt embeddings for GPS: the mean over real (non-padding) positions of the frozen base
//! policy's final hidden states (adapters off, after the final norm), computed once per dataset
//! prompt in chunks at the start of a run. The same tokens the rollouts see (chat template
//! included) are embedded, so no second model is needed. They are cached on disk per run folder.

use std::collections::HashMap;
use std::path::Path;

use augur_model::{DecoderModel, ForwardOpts, Grad, LogitsAt, StepInput};
use candle_core::{DType, Tensor};

use crate::Result;

/// Embeds `rows` (token ids) in chunks of `chunk`: returns `rows.len() × hidden` values, row-major.
pub fn mean_pooled_hidden(
    model: &DecoderModel,
    rows: &[Vec<u32>],
    pad_id: u32,
    chunk: usize,
) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    for part in rows.chunks(chunk.max(1)) {
        let input = StepInput::left_padded(part, pad_id, model.device())?;
        let hidden = model
            .forward(
                &input,
                None,
                ForwardOpts {
                    adapters: false,
                    grad: Grad::Off,
                    logits: LogitsAt::Hidden,
                },
            )?
            .to_dtype(DType::F32)?;
        let (b, t) = (input.batch, input.len);
        let mask: Vec<f32> = input.mask.iter().map(|&m| m as f32).collect();
        let mask = Tensor::from_vec(mask, (b, t, 1), hidden.device())?;
        let sum = hidden.broadcast_mul(&mask)?.sum(1)?;
        let count = mask.sum(1)?.clamp(1f32, f32::MAX)?;
        let mean = sum.broadcast_div(&count)?;
        out.extend(mean.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}

/// [`mean_pooled_hidden`] through a file cache: GPS embeds every dataset prompt with the frozen
/// base at the start of a run, which a resumed run (or a rerun in the same folder) need not
/// repeat. The cache is keyed by a fingerprint of `rows` (the prompts' token ids, chat template
/// included) and `model_key`; any mismatch or unreadable file recomputes and rewrites it
/// (atomically). Returns the embeddings and whether they came from the cache.
pub fn cached_mean_pooled_hidden(
    cache: &Path,
    model_key: &str,
    model: &DecoderModel,
    rows: &[Vec<u32>],
    pad_id: u32,
    chunk: usize,
) -> Result<(Vec<f32>, bool)> {
    let print = fingerprint(model_key, rows);
    if let Some(data) = read_cache(cache, print, model) {
        return Ok((data, true));
    }
    let data = mean_pooled_hidden(model, rows, pad_id, chunk)?;
    let dev = candle_core::Device::Cpu;
    let hidden = data.len() / rows.len().max(1);
    let tensors = HashMap::from([
        (
            FINGERPRINT.to_string(),
            Tensor::from_vec(vec![print as u32, (print >> 32) as u32], 2, &dev)?,
        ),
        (
            EMBEDDINGS.to_string(),
            Tensor::from_slice(&data, (rows.len(), hidden), &dev)?,
        ),
    ]);
    augur_model::atomic::save_tensors_atomic(cache, &tensors)?;
    Ok((data, false))
}

const FINGERPRINT: &str = "fingerprint";
const EMBEDDINGS: &str = "embeddings";

/// The cached embeddings when the file exists, matches `print` and the model's hidden size.
fn read_cache(cache: &Path, print: u64, model: &DecoderModel) -> Option<Vec<f32>> {
    let t = candle_core::safetensors::load(cache, &candle_core::Device::Cpu).ok()?;
    let stored = t.get(FINGERPRINT)?.to_vec1::<u32>().ok()?;
    let emb = t.get(EMBEDDINGS)?;
    let fits =
        stored == [print as u32, (print >> 32) as u32] && emb.dim(1).ok()? == model.cfg.hidden_size;
    fits.then(|| emb.flatten_all().ok()?.to_vec1::<f32>().ok())?
}

/// FNV-1a over the model key and every row's ids (lengths included, so rows cannot blur).
fn fingerprint(model_key: &str, rows: &[Vec<u32>]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(model_key.as_bytes());
    for r in rows {
        eat(&(r.len() as u32).to_le_bytes());
        for id in r {
            eat(&id.to_le_bytes());
        }
    }
    h
}
