//! The policy update of one rollout batch: completions are packed into micro-batches, scored
//! teacher-forced by the current policy (and, when `beta > 0`, by the reference = adapters off),
//! and the policy loss's gradients are accumulated over the micro-batches of each mini-batch into
//! one optimizer step (PPO-style: `ppo_epochs` passes × mini-batches optimizer steps per batch).

use std::time::Instant;

use augur_model::{DecoderModel, ForwardOpts, Grad, LayerTape, LogitsAt, StepInput};
use candle_core::{DType, Device, Tensor};

use super::config::AlgorithmSection;
use crate::chunked_logprob::{head_logprob_entropy, FrozenHead, HeadGrad};
use crate::logprob::{token_entropy, token_logprobs};
use crate::loss::{batch_counts, policy_loss, BatchCounts, LossInputs, LossStats};
use crate::optim::{FusedAdamW, StepReport};
use crate::schedule::LrSchedule;
use crate::Result;

/// One completion ready for the update.
#[derive(Clone, Debug)]
pub struct Rollout {
    /// The group (one prompt's G completions) the row belongs to, numbered within the batch by
    /// whoever built it: rows of a group share `prompt_ids`, so the update runs that prompt once
    /// per micro-batch (`shared_prefix`) instead of finding equal prompts again.
    pub group: usize,
    pub prompt_ids: Vec<u32>,
    pub completion: Vec<u32>,
    /// Rollout-time log-probabilities, one per completion id.
    pub old_logp: Vec<f32>,
    pub advantage: f32,
    pub truncated: bool,
}

/// Tensors of one micro-batch. Completion tokens are right-aligned in `[B, C]` (`C` the longest
/// completion), matching the last `C` logit positions of the left-padded teacher-forced input.
struct MicroBatch {
    input: StepInput,
    /// `None` when rows carry their whole prompt.
    prefixes: Option<Prefixes>,
    targets: Tensor,
    old_logp: Tensor,
    mask: Tensor,
    advantages: Tensor,
    truncated: Vec<bool>,
    width: usize,
    /// Prompt + completion tokens of the rows, as if each were run in full.
    tokens: usize,
}

/// The distinct prompts (less their last token) that a micro-batch's rows continue.
struct Prefixes {
    input: StepInput,
    /// Each row's prompt, an index into `input`'s rows.
    of_row: Vec<usize>,
}

/// The prompts of the groups in `rows` (in order of first appearance) and each row's index
/// among them, when some group has several rows and every prompt leaves a non-empty prefix.
fn shared_prompts(rows: &[Rollout]) -> Option<(Vec<&[u32]>, Vec<usize>)> {
    let mut groups: Vec<usize> = Vec::new();
    let mut distinct: Vec<&[u32]> = Vec::new();
    let mut of_row = Vec::with_capacity(rows.len());
    for r in rows {
        if r.prompt_ids.len() < 2 {
            return None;
        }
        let i = groups
            .iter()
            .position(|&g| g == r.group)
            .unwrap_or_else(|| {
                groups.push(r.group);
                distinct.push(&r.prompt_ids);
                distinct.len() - 1
            });
        debug_assert_eq!(distinct[i], r.prompt_ids.as_slice(), "group {}", r.group);
        of_row.push(i);
    }
    (distinct.len() < rows.len()).then_some((distinct, of_row))
}

/// The policy's inputs for `rows`: each row's prompt and completion less the last token, or,
/// with shared prefixes, the distinct prompts less their last token and rows that open with
/// that token (so their logits still predict every completion token).
fn teacher_forced_inputs(
    rows: &[Rollout],
    pad_id: u32,
    shared_prefix: bool,
    dev: &Device,
) -> Result<(StepInput, Option<Prefixes>)> {
    let shared = shared_prefix.then(|| shared_prompts(rows)).flatten();
    Ok(match shared {
        Some((distinct, of_row)) => {
            let heads: Vec<Vec<u32>> = distinct.iter().map(|p| p[..p.len() - 1].to_vec()).collect();
            let (seqs, starts): (Vec<Vec<u32>>, Vec<u32>) = rows
                .iter()
                .map(|r| {
                    let (last, head) = r.prompt_ids.split_last().expect("prompts of 2+ tokens");
                    let keep = r.completion.len().saturating_sub(1);
                    let seq = std::iter::once(*last)
                        .chain(r.completion[..keep].iter().copied())
                        .collect();
                    (seq, head.len() as u32)
                })
                .unzip();
            (
                StepInput::left_padded_from(&seqs, &starts, pad_id, dev)?,
                Some(Prefixes {
                    input: StepInput::left_padded(&heads, pad_id, dev)?,
                    of_row,
                }),
            )
        }
        None => {
            let seqs: Vec<Vec<u32>> = rows
                .iter()
                .map(|r| {
                    let mut full = [r.prompt_ids.as_slice(), &r.completion].concat();
                    full.pop();
                    full
                })
                .collect();
            (StepInput::left_padded(&seqs, pad_id, dev)?, None)
        }
    })
}

fn pack(
    rows: &[Rollout],
    pad_id: u32,
    shared_prefix: bool,
    model: &DecoderModel,
) -> Result<MicroBatch> {
    let dev = model.device();
    let width = rows
        .iter()
        .map(|r| r.completion.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let (mut targets, mut old, mut mask) = (Vec::new(), Vec::new(), Vec::new());
    for r in rows {
        let pad = width - r.completion.len();
        targets.extend(std::iter::repeat_n(pad_id, pad).chain(r.completion.iter().copied()));
        old.extend(std::iter::repeat_n(0f32, pad).chain(r.old_logp.iter().copied()));
        mask.extend(
            std::iter::repeat_n(0f32, pad).chain(std::iter::repeat_n(1f32, r.completion.len())),
        );
    }
    let (input, prefixes) = teacher_forced_inputs(rows, pad_id, shared_prefix, dev)?;
    let b = rows.len();
    Ok(MicroBatch {
        input,
        prefixes,
        targets: Tensor::from_vec(targets, (b, width), dev)?,
        old_logp: Tensor::from_vec(old, (b, width), dev)?,
        mask: Tensor::from_vec(mask, (b, width), dev)?,
        advantages: Tensor::from_vec(rows.iter().map(|r| r.advantage).collect::<Vec<_>>(), b, dev)?,
        truncated: rows.iter().map(|r| r.truncated).collect(),
        width,
        tokens: rows
            .iter()
            .map(|r| (r.prompt_ids.len() + r.completion.len()).saturating_sub(1))
            .sum(),
    })
}

/// A micro-batch scored by the policy.
struct Scored<'a> {
    /// Log-probabilities of the completion tokens `[B, C]`.
    logp: Tensor,
    /// Their entropies, when asked for.
    entropy: Option<Tensor>,
    /// With activation checkpointing: the decoder blocks' backward, to run after the loss's.
    tape: Option<LayerTape<'a>>,
}

/// Scores the completion tokens of `mb`: log-probabilities, and entropies when `entropy`.
///
/// On the CPU in f32 the LM head runs inside one op on the completion tokens only, in chunks of
/// at most `cfg.logits_memory_mb` of logits, with its backward prepared in the forward (see
/// [`crate::chunked_logprob`]): the `[B, C, V]` logits never exist. Elsewhere, the plain logits
/// and the fused or composite logprob ops. With `cfg.activation_checkpointing` a tracked
/// forward keeps only each decoder block's input (see [`augur_model::checkpoint`]) and returns
/// the tape that back-propagates through them.
fn completion_logprobs<'a>(
    model: &'a DecoderModel,
    mb: &'a MicroBatch,
    adapters: bool,
    grad: Grad,
    entropy: bool,
    cfg: &AlgorithmSection,
) -> Result<Scored<'a>> {
    let (b, c) = mb.targets.dims2()?;
    let vocab = model.lm_head().out_features;
    let budget_rows = (cfg.logits_memory_mb << 20) / (vocab * 4).max(1);
    let chunked = model.device().is_cpu() && model.dtype() == DType::F32;
    let at = match chunked {
        true => LogitsAt::HiddenTail(mb.width),
        false => LogitsAt::Tail(mb.width),
    };
    let opts = ForwardOpts {
        adapters,
        grad,
        logits: at,
    };
    let prefixes = mb
        .prefixes
        .as_ref()
        .map(|p| (&p.input, p.of_row.as_slice()));
    let (out, tape) = match (
        cfg.activation_checkpointing && grad == Grad::Tracked,
        prefixes,
    ) {
        (true, prefixes) => {
            let (out, tape) = model.forward_checkpointed(&mb.input, prefixes, opts)?;
            (out, Some(tape))
        }
        (false, Some((p, of_row))) => (
            model.forward_with_prefixes(p, of_row, &mb.input, opts)?,
            None,
        ),
        (false, None) => (model.forward(&mb.input, None, opts)?, None),
    };
    let (logp, entropy) = match (chunked, out.device().is_cuda()) {
        (false, true) => fused_logprobs(&out, &mb.targets, entropy)?,
        (false, false) => {
            let logits = out.to_dtype(DType::F32)?;
            let logp = token_logprobs(&logits, &mb.targets)?;
            let ent = entropy.then(|| token_entropy(&logits)).transpose()?;
            (logp, ent)
        }
        (true, _) => {
            let hidden = out.flatten_to(1)?;
            let targets = mb.targets.flatten_all()?.to_vec1::<u32>()?;
            let active: Vec<bool> = mb
                .mask
                .flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .map(|&m| m != 0.0)
                .collect();
            let head_grad = match (grad, entropy) {
                (Grad::Off, _) => HeadGrad::Off,
                (Grad::Tracked, false) => HeadGrad::Logprob,
                (Grad::Tracked, true) => HeadGrad::LogprobEntropy,
            };
            let both = head_logprob_entropy(
                &hidden,
                &targets,
                Some(&active),
                &FrozenHead::of(model),
                budget_rows.max(1),
                head_grad,
            )?;
            let logp = both.narrow(1, 0, 1)?.reshape((b, c))?;
            let ent = entropy
                .then(|| both.narrow(1, 1, 1)?.reshape((b, c)))
                .transpose()?;
            (logp, ent)
        }
    };
    Ok(Scored {
        logp,
        entropy,
        tape,
    })
}

/// Logprobs (and entropies) of `logits: [B, C, V]` through augur-kernels' fused op: the CUDA
/// kernel on a GPU (bf16 logits are read as they are, statistics are f32), one pass per row and
/// no `[B, C, V]` log-softmax. Same values as the composite [`token_logprobs`] path.
fn fused_logprobs(
    logits: &Tensor,
    targets: &Tensor,
    entropy: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let (b, c, v) = logits.dims3()?;
    let ids = targets.flatten_all()?.to_dtype(DType::U32)?;
    let both = augur_kernels::token_logprob_entropy(&logits.reshape((b * c, v))?, &ids)
        .map_err(|e| crate::Error::Invalid(e.to_string()))?;
    let logp = both.narrow(1, 0, 1)?.reshape((b, c))?;
    let ent = entropy
        .then(|| both.narrow(1, 1, 1)?.reshape((b, c)))
        .transpose()?;
    Ok((logp, ent))
}

/// What one update did, for the step's metrics.
#[derive(Clone, Debug, Default)]
pub struct UpdateReport {
    pub loss: f64,
    pub stats: LossStats,
    pub steps: Vec<StepReport>,
    pub lr: f64,
    /// Teacher-forced tokens (prompt + completion per row) scored by the policy forwards,
    /// counted as if every row ran in full, so the rate is comparable with shared prefixes.
    pub train_tokens: usize,
    pub reference_secs: f64,
    pub update_secs: f64,
}

/// One optimizer step's share of the rollouts, packed into micro-batches, with the counts its
/// loss is normalised by (so the micro-batch losses add up to the mini-batch loss).
struct MiniBatch {
    micro: Vec<MicroBatch>,
    counts: BatchCounts,
}

/// Runs `cfg.ppo_epochs` passes over `rollouts`; each pass takes one optimizer step per
/// mini-batch of `cfg.mini_batch_size` completions (all of them when 0).
pub fn policy_update(
    model: &DecoderModel,
    opt: &mut FusedAdamW,
    schedule: &LrSchedule,
    rollouts: &[Rollout],
    cfg: &AlgorithmSection,
    pad_id: u32,
) -> Result<UpdateReport> {
    let mut rep = UpdateReport::default();
    let mini_size = match cfg.mini_batch_size {
        0 => rollouts.len().max(1),
        m => m,
    };
    let minis = rollouts
        .chunks(mini_size)
        .map(|rows| {
            let micro = rows
                .chunks(cfg.micro_batch_size)
                .map(|rows| pack(rows, pad_id, cfg.shared_prefix, model))
                .collect::<Result<Vec<_>>>()?;
            let mut counts = BatchCounts::default();
            for mb in &micro {
                counts = counts + batch_counts(&mb.mask, Some(&mb.truncated), &cfg.loss)?;
            }
            Ok(MiniBatch { micro, counts })
        })
        .collect::<Result<Vec<_>>>()?;

    let t0 = Instant::now();
    let refs = if cfg.loss.beta > 0.0 {
        let r = minis
            .iter()
            .map(|mini| {
                mini.micro
                    .iter()
                    .map(|mb| {
                        let scored = completion_logprobs(model, mb, false, Grad::Off, false, cfg)?;
                        Ok(scored.logp.detach())
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Some(r)
    } else {
        None
    };
    rep.reference_secs = t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    for _ in 0..cfg.ppo_epochs {
        let mut epoch_stats: Option<LossStats> = None;
        let mut epoch_loss = 0.0;
        for (m, mini) in minis.iter().enumerate() {
            for (i, mb) in mini.micro.iter().enumerate() {
                let Scored {
                    logp,
                    entropy,
                    tape,
                } = completion_logprobs(
                    model,
                    mb,
                    true,
                    Grad::Tracked,
                    cfg.loss.entropy_coef != 0.0,
                    cfg,
                )?;
                let inputs = LossInputs {
                    logp: &logp,
                    old_logp: &mb.old_logp,
                    ref_logp: refs.as_ref().map(|r| &r[m][i]),
                    advantages: &mb.advantages,
                    mask: &mb.mask,
                    truncated: Some(&mb.truncated),
                    entropy: entropy.as_ref(),
                    counts: Some(mini.counts),
                };
                let (loss, stats) = policy_loss(&inputs, &cfg.loss)?;
                epoch_loss += loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                let grads = loss.backward()?;
                // The head's graph (whole logits, below the chunking budget) goes before the
                // blocks' backward runs.
                drop((loss, logp, entropy));
                opt.accumulate(&grads)?;
                if let Some(tape) = tape {
                    tape.backward(&grads, |g| opt.accumulate(g))?;
                }
                epoch_stats = Some(match epoch_stats {
                    Some(s) => s.merge(&stats),
                    None => stats,
                });
                rep.train_tokens += mb.tokens;
            }
            rep.lr = schedule.lr_at(opt.steps());
            rep.steps.push(opt.step(rep.lr)?);
        }
        // The loss of the epoch's whole batch: the mean over its mini-batches.
        rep.loss = epoch_loss / minis.len().max(1) as f64;
        rep.stats = epoch_stats.unwrap_or_default();
    }
    rep.update_secs = t0.elapsed().as_secs_f64();
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused path (the CUDA route; its CPU twin runs here) reshapes `[B, C, V]` back to the
    /// composite path's `[B, C]` logprobs and entropies, values and gradients alike.
    #[test]
    fn fused_logprobs_match_the_composite_path() {
        let (b, c, v) = (2, 3, 11);
        let data: Vec<f32> = (0..b * c * v)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 4.0)
            .collect();
        let x = candle_core::Var::from_vec(data, (b, c, v), &Device::Cpu).unwrap();
        let targets = Tensor::new(&[[0u32, 5, 10], [3, 3, 7]], &Device::Cpu).unwrap();
        let weights = Tensor::new(&[[1f32, -2., 0.5], [0.25, 3., -1.]], &Device::Cpu).unwrap();
        let loss_and_grad = |lp: &Tensor, ent: &Tensor| {
            let loss = ((lp * &weights).unwrap().sum_all().unwrap()
                + (ent * &weights).unwrap().sum_all().unwrap())
            .unwrap();
            let g = loss.backward().unwrap().get(x.as_tensor()).unwrap().clone();
            (loss.to_scalar::<f32>().unwrap(), g)
        };
        let (lp, ent) = fused_logprobs(x.as_tensor(), &targets, true).unwrap();
        let (fused_loss, fused_grad) = loss_and_grad(&lp, &ent.unwrap());
        let lp = token_logprobs(x.as_tensor(), &targets).unwrap();
        let ent = token_entropy(x.as_tensor()).unwrap();
        let (loss, grad) = loss_and_grad(&lp, &ent);
        assert!((fused_loss - loss).abs() < 1e-4, "{fused_loss} vs {loss}");
        let diff = (fused_grad - grad)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
    }
}
