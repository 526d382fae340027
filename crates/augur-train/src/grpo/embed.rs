//! Prompt embeddings for GPS: the mean over real (non-padding) positions of the frozen base
//! policy's final hidden states (adapters off, after the final norm), computed once per dataset
//! prompt in chunks at the start of a run. The same tokens the rollouts see (chat template
//! included) are embedded, so no second model is needed.

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
