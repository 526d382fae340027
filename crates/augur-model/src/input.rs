//! The token batch given to one forward call: ids, RoPE positions and a key mask.

use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};

/// A `[B, T]` block of tokens with per-row positions and a padding mask.
///
/// Rows are left-padded; `mask` is 1 for real tokens and 0 for padding, and
/// positions count real tokens only (HF's `cumsum(mask) - 1`, clamped at 0), so a
/// row's logits do not depend on how much padding precedes it.
pub struct StepInput {
    pub ids: Tensor,
    pub positions: Tensor,
    /// Row-major `[B, T]`.
    pub mask: Vec<u8>,
    pub batch: usize,
    pub len: usize,
}

impl StepInput {
    /// Left-pads `rows` to a common length with `pad_id`.
    pub fn left_padded(rows: &[Vec<u32>], pad_id: u32, device: &Device) -> Result<Self> {
        let starts = vec![0u32; rows.len()];
        Self::left_padded_from(rows, &starts, pad_id, device)
    }

    /// Like [`StepInput::left_padded`], but row `i`'s first token sits at position `starts[i]`
    /// (used to continue rows whose earlier tokens are already cached).
    pub fn left_padded_from(
        rows: &[Vec<u32>],
        starts: &[u32],
        pad_id: u32,
        device: &Device,
    ) -> Result<Self> {
        let batch = rows.len();
        let len = rows.iter().map(Vec::len).max().unwrap_or(0);
        if batch == 0 || len == 0 {
            return Err(ModelError::Input("empty batch or empty rows".into()));
        }
        let mut ids = Vec::with_capacity(batch * len);
        let mut positions = Vec::with_capacity(batch * len);
        let mut mask = Vec::with_capacity(batch * len);
        for (row, &start) in rows.iter().zip(starts) {
            let pad = len - row.len();
            ids.extend(std::iter::repeat_n(pad_id, pad).chain(row.iter().copied()));
            positions.extend(
                std::iter::repeat_n(start, pad).chain((0..row.len() as u32).map(|p| start + p)),
            );
            mask.extend(std::iter::repeat_n(0u8, pad).chain(std::iter::repeat_n(1u8, row.len())));
        }
        Ok(StepInput {
            ids: Tensor::from_vec(ids, (batch, len), device)?,
            positions: Tensor::from_vec(positions, (batch, len), device)?,
            mask,
            batch,
            len,
        })
    }

    /// One new token per row at the given positions (a decode step).
    pub fn decode(tokens: &[u32], positions: &[u32], device: &Device) -> Result<Self> {
        let batch = tokens.len();
        if batch == 0 || positions.len() != batch {
            return Err(ModelError::Input(format!(
                "decode step needs one position per token ({} tokens, {} positions)",
                batch,
                positions.len()
            )));
        }
        Ok(StepInput {
            ids: Tensor::from_slice(tokens, (batch, 1), device)?,
            positions: Tensor::from_slice(positions, (batch, 1), device)?,
            mask: vec![1; batch],
            batch,
            len: 1,
        })
    }
}
