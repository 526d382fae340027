//! The SFT loss: next-token cross-entropy on completion / assistant tokens only.
//!
//! A micro-batch is teacher-forced: row `i` is fed `ids[..n-1]` (left-padded) and position `t`
//! predicts `ids[t+1]`, counted when `trainable[t+1]`. Only the last `width` positions get
//! logits (`width` = from the row's first target to its end, the longest over rows), since the
//! LM head is the largest matmul of a small model and prompt positions carry no loss.
//!
//! The step loss is the mean over every target token of the optimizer step (all its
//! micro-batches), so gradient accumulation gives the gradient of one big batch.

use std::ops::Range;

use augur_model::{DecoderModel, ForwardOpts, Grad, LogitsAt, StepInput};
use candle_core::{DType, Device, Tensor, D};

use super::data::Example;
use crate::chunked_logprob::{head_logprob_entropy, FrozenHead, HeadGrad};
use crate::logprob::token_logprobs;
use crate::Result;

/// Targets and mask of a micro-batch, right-aligned with the last `width` input positions.
#[derive(Clone, Debug, PartialEq)]
pub struct Targets {
    /// Row-major `[B, width]` next-token ids (`pad_id` where masked).
    pub ids: Vec<u32>,
    /// Row-major `[B, width]`: 1 where the position's target is a trainable token.
    pub mask: Vec<f32>,
    pub width: usize,
    /// Per row, the columns of each of its examples' targets, in order (one range per
    /// example; a packed row has several).
    pub spans: Vec<Vec<Range<usize>>>,
}

/// The teacher-forced inputs of each row (its examples' `ids[..n-1]`, end to end: one
/// example per row unless packed) and their targets.
pub fn teacher_forced(rows: &[Vec<&Example>], pad_id: u32) -> (Vec<Vec<Vec<u32>>>, Targets) {
    let inputs: Vec<Vec<Vec<u32>>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|e| e.ids[..e.ids.len() - 1].to_vec())
                .collect()
        })
        .collect();
    // A row's targets: its examples' `ids[1..]` with their flags, end to end.
    let joined: Vec<(Vec<u32>, Vec<bool>)> = rows
        .iter()
        .map(|r| {
            let ids = r.iter().flat_map(|e| e.ids[1..].iter().copied()).collect();
            let flags = r
                .iter()
                .flat_map(|e| e.trainable[1..].iter().copied())
                .collect();
            (ids, flags)
        })
        .collect();
    // From the first trainable target to the end of the row.
    let width = joined
        .iter()
        .map(|(ids, flags)| ids.len() - flags.iter().position(|&t| t).unwrap_or(0))
        .max()
        .unwrap_or(1)
        .max(1);
    let (mut ids, mut mask, mut spans) = (Vec::new(), Vec::new(), Vec::new());
    for (row, (tgt, flags)) in rows.iter().zip(&joined) {
        let take = tgt.len().min(width);
        let (pad, cut) = (width - take, tgt.len() - take);
        ids.extend(std::iter::repeat_n(pad_id, pad));
        mask.extend(std::iter::repeat_n(0f32, pad));
        for j in cut..tgt.len() {
            ids.push(tgt[j]);
            mask.push(if flags[j] { 1.0 } else { 0.0 });
        }
        // Row position p is column p - cut + pad.
        let mut offset = 0;
        let mut row_spans = Vec::with_capacity(row.len());
        for e in row {
            let (start, end) = (offset, offset + e.ids.len() - 1);
            row_spans.push(start.max(cut) - cut + pad..end.max(cut) - cut + pad);
            offset = end;
        }
        spans.push(row_spans);
    }
    (
        inputs,
        Targets {
            ids,
            mask,
            width,
            spans,
        },
    )
}

/// Per-position negative log-likelihood of the masked targets, `[B, width]` (0 where
/// masked), differentiable through `logits: [B, width, V]`.
pub fn masked_nll_tokens(logits: &Tensor, targets: &Targets) -> Result<Tensor> {
    let (b, w, _) = logits.dims3()?;
    let dev = logits.device();
    let ids = Tensor::from_slice(&targets.ids, (b, w), dev)?;
    let mask = Tensor::from_slice(&targets.mask, (b, w), dev)?;
    let logp = token_logprobs(logits, &ids)?.to_dtype(DType::F32)?;
    Ok((logp * mask)?.neg()?)
}

/// Per-row summed negative log-likelihood of the masked targets, `[B]`, differentiable
/// through `logits: [B, width, V]`.
pub fn masked_nll(logits: &Tensor, targets: &Targets) -> Result<Tensor> {
    Ok(masked_nll_tokens(logits, targets)?.sum(D::Minus1)?)
}

/// Summed negative log-likelihood of each example (rows in order, a packed row's examples
/// in order), from [`masked_nll_tokens`]'s `[B, width]`.
pub fn example_nll_sums(tokens: &Tensor, targets: &Targets) -> Result<Vec<f64>> {
    let flat = tokens
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let w = targets.width;
    Ok(targets
        .spans
        .iter()
        .enumerate()
        .flat_map(|(r, spans)| {
            let row = &flat[r * w..(r + 1) * w];
            spans.iter().map(move |s| row[s.clone()].iter().sum())
        })
        .collect())
}

/// A micro-batch ready for the model (one example per row, or packed rows).
pub struct Packed {
    pub input: StepInput,
    pub targets: Targets,
    /// Target tokens per row.
    pub counts: Vec<usize>,
    /// Input tokens (the throughput's unit).
    pub tokens: usize,
}

/// One example per row, for one forward on `dev`.
pub fn pack(rows: &[&Example], pad_id: u32, dev: &Device) -> Result<Packed> {
    let rows: Vec<Vec<&Example>> = rows.iter().map(|&e| vec![e]).collect();
    batch(&rows, false, pad_id, dev)
}

/// Rows of examples for one forward on `dev`; with `packed` each row's examples run end to
/// end in one sequence, each attending only to itself ([`StepInput::packed`]).
pub fn batch(rows: &[Vec<&Example>], packed: bool, pad_id: u32, dev: &Device) -> Result<Packed> {
    let (inputs, targets) = teacher_forced(rows, pad_id);
    let input = match packed {
        true => StepInput::packed(&inputs, pad_id, dev)?,
        false => {
            let flat: Vec<Vec<u32>> = inputs.iter().map(|r| r.concat()).collect();
            StepInput::left_padded(&flat, pad_id, dev)?
        }
    };
    Ok(Packed {
        tokens: inputs.iter().flatten().map(Vec::len).sum(),
        input,
        counts: rows
            .iter()
            .map(|r| r.iter().map(|e| e.target_count()).sum())
            .collect(),
        targets,
    })
}

/// Logits of the target positions, `[B, width, V]` (f32).
pub fn target_logits(
    model: &DecoderModel,
    p: &Packed,
    adapters: bool,
    grad: Grad,
) -> Result<Tensor> {
    let opts = ForwardOpts {
        adapters,
        grad,
        logits: LogitsAt::Tail(p.targets.width),
    };
    Ok(model.forward(&p.input, None, opts)?.to_dtype(DType::F32)?)
}

/// Per-position negative log-likelihood of the masked targets, `[B, width]` (0 where masked),
/// from the model; differentiable through the adapters when `grad` is tracked.
///
/// On the CPU in f32 the LM head runs inside one op on the target positions only, with its
/// backward prepared in the forward (see [`crate::chunked_logprob`]): no `[B, width, V]` logits,
/// and no head product for prompt or padding positions. Elsewhere it is
/// [`masked_nll_tokens`] of [`target_logits`].
pub fn target_nll(model: &DecoderModel, p: &Packed, adapters: bool, grad: Grad) -> Result<Tensor> {
    if !(model.device().is_cpu() && model.dtype() == DType::F32) {
        return masked_nll_tokens(&target_logits(model, p, adapters, grad)?, &p.targets);
    }
    let (b, w) = (p.targets.mask.len() / p.targets.width, p.targets.width);
    let opts = ForwardOpts {
        adapters,
        grad,
        logits: LogitsAt::HiddenTail(w),
    };
    let hidden = model.forward(&p.input, None, opts)?.flatten_to(1)?;
    let active: Vec<bool> = p.targets.mask.iter().map(|&m| m != 0.0).collect();
    let head_grad = match grad {
        Grad::Off => HeadGrad::Off,
        Grad::Tracked => HeadGrad::Logprob,
    };
    // Chunks of 256 MiB of logits at most.
    let chunk = (256 << 20) / (model.lm_head().out_features * 4).max(1);
    let both = head_logprob_entropy(
        &hidden,
        &p.targets.ids,
        Some(&active),
        &FrozenHead::of(model),
        chunk,
        head_grad,
    )?;
    // Inactive positions are 0 already.
    Ok(both.narrow(1, 0, 1)?.reshape((b, w))?.neg()?)
}

/// Mean loss per example (no gradients), e.g. for MaxLoss and RHO scores.
pub fn example_losses(model: &DecoderModel, p: &Packed, adapters: bool) -> Result<Vec<f64>> {
    let nll = target_nll(model, p, adapters, Grad::Off)?;
    per_example_mean(&nll.sum(D::Minus1)?, &p.counts)
}

/// Row sums `[B]` divided by each row's target count.
pub fn per_example_mean(sums: &Tensor, counts: &[usize]) -> Result<Vec<f64>> {
    Ok(sums
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?
        .iter()
        .zip(counts)
        .map(|(s, &c)| s / c.max(1) as f64)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prompt of 3 tokens and a completion of 2: only the completion's two tokens are
    /// targets, predicted from positions 2 and 3; a longer prompt's position in the tail is masked.
    #[test]
    fn loss_is_taken_on_completion_tokens_only() {
        let short = Example {
            ids: vec![3, 2, 3, 1, 2],
            trainable: vec![false, false, false, true, true],
            truncated: false,
        };
        // A longer prompt and a 1-token completion.
        let long = Example {
            ids: vec![0, 0, 0, 0, 0, 3],
            trainable: vec![false, false, false, false, false, true],
            truncated: false,
        };
        let (inputs, t) = teacher_forced(&[vec![&short], vec![&long]], 0);
        assert_eq!(
            inputs,
            vec![vec![vec![3, 2, 3, 1]], vec![vec![0, 0, 0, 0, 0]]]
        );
        // Width 2: short's targets [1, 2]; long's last two targets [0 (prompt), 3].
        assert_eq!(t.width, 2);
        assert_eq!(t.ids, [1, 2, 0, 3]);
        assert_eq!(t.mask, [1.0, 1.0, 0.0, 1.0]);
        // Columns of each example: short's 4 targets start 2 before the tail, long's 5 at 3.
        assert_eq!(t.spans, vec![vec![0..2], vec![0..2]]);

        // Logits for V = 4 at the two tail positions of each row, by hand.
        let v = 4;
        let l: Vec<f32> = vec![
            0.0, 1.0, 0.5, -1.0, // short: predicts 1
            2.0, 0.0, 1.0, 0.0, // short: predicts 2
            9.0, 0.0, 0.0, 0.0, // long: a prompt position (masked; its value must not matter)
            0.2, -0.3, 0.1, 0.7, // long: predicts 3
        ];
        let logits = Tensor::from_vec(l.clone(), (2, 2, v), &Device::Cpu).unwrap();
        let sums = masked_nll(&logits, &t).unwrap().to_vec1::<f32>().unwrap();
        let nll = |row: &[f32], y: usize| {
            let z: f32 = row.iter().map(|x| x.exp()).sum();
            -(row[y] - z.ln())
        };
        let want = [nll(&l[0..4], 1) + nll(&l[4..8], 2), nll(&l[12..16], 3)];
        for (g, w) in sums.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
        // Changing the masked prompt position's logits changes nothing.
        let mut l2 = l.clone();
        l2[8..12].copy_from_slice(&[-5.0, 3.0, 0.0, 8.0]);
        let logits2 = Tensor::from_vec(l2, (2, 2, v), &Device::Cpu).unwrap();
        assert_eq!(
            masked_nll(&logits2, &t).unwrap().to_vec1::<f32>().unwrap(),
            sums
        );
        let means = per_example_mean(
            &Tensor::new(sums.as_slice(), &Device::Cpu).unwrap(),
            &[short.target_count(), long.target_count()],
        )
        .unwrap();
        assert!((means[0] - want[0] as f64 / 2.0).abs() < 1e-5);
        assert!((means[1] - want[1] as f64).abs() < 1e-5);
    }
}
