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
    /// Row-major `[B, T]`, for rows that pack several sequences ([`StepInput::packed`]):
    /// which sequence of its row each token belongs to (padding: 0). A token attends only
    /// to tokens of its own sequence. `None`: one sequence per row.
    pub segments: Option<Vec<u32>>,
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
            segments: None,
            batch,
            len,
        })
    }

    /// Rows that each pack several sequences end to end (left-padded to a common length):
    /// positions restart at 0 with each sequence and attention stays within a sequence
    /// (block-diagonal causal), so every sequence gets the logits it would get alone while
    /// short ones share a row instead of padding.
    pub fn packed(rows: &[Vec<Vec<u32>>], pad_id: u32, device: &Device) -> Result<Self> {
        let flat: Vec<Vec<u32>> = rows.iter().map(|r| r.concat()).collect();
        let mut input = Self::left_padded(&flat, pad_id, device)?;
        if rows.iter().flatten().any(Vec::is_empty) {
            return Err(ModelError::Input("a packed sequence is empty".into()));
        }
        let len = input.len;
        let (mut positions, mut segments) = (Vec::with_capacity(rows.len() * len), Vec::new());
        for (row, joined) in rows.iter().zip(&flat) {
            let pad = len - joined.len();
            positions.extend(std::iter::repeat_n(0u32, pad));
            segments.extend(std::iter::repeat_n(0u32, pad));
            for (s, seq) in row.iter().enumerate() {
                positions.extend(0..seq.len() as u32);
                segments.extend(std::iter::repeat_n(s as u32 + 1, seq.len()));
            }
        }
        input.positions = Tensor::from_vec(positions, (rows.len(), len), device)?;
        input.segments = Some(segments);
        Ok(input)
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
            segments: None,
            batch,
            len: 1,
        })
    }
}
