//! The GRPO-family policy loss: a pure function of per-token log-probabilities, advantages and masks.
//!
//! Per token (`r` the importance ratio, `A` the completion's advantage):
//!
//! ```text
//! pg   = max(-A r, -A clip(r, 1 - eps_low, 1 + eps_high))      PPO clip, DAPO clip-higher
//! loss = agg(pg + beta * kl(logp, ref) - entropy_coef * H)
//! ```
//!
//! Definitions, where the frameworks differ:
//! - Token ratio: `r = exp(clamp(logp - old_logp, -20, 20))` (verl's clamp; TRL has none).
//! - Sequence ratio (GSPO): `s_i = exp(mean_t (logp - old_logp))` over the completion's valid tokens,
//!   the length-normalised (geometric-mean) ratio of the GSPO paper. It enters each token through
//!   the GSPO-token form `r_t = sg[s_i] * exp(logp_t - sg[logp_t])`: the value is `s_i` and
//!   `d r_t / d logp_t = s_i`, so with one advantage per completion the gradient is exactly GSPO's.
//!   The log of `s_i` is clamped to at most 10 (verl). GSPO's paper uses much smaller clip ranges
//!   (`eps_low = 3e-4`, `eps_high = 4e-4`); set them explicitly.
//! - KL to the reference (Schulman's estimators, `d = ref - logp`): `k1 = logp - ref`,
//!   `k2 = (logp - ref)^2 / 2`, `k3 = exp(d) - d - 1` with `d` clamped to `[-20, 20]` and `k3`
//!   clamped to `[-10, 10]` (verl's `low_var_kl`; TRL's k3 is unclamped).
//! - Aggregation over the valid tokens (mask 1, completion not dropped by truncation masking):
//!   `seq-mean-token-mean` (GRPO) averages tokens within a completion then completions;
//!   `token-mean` (DAPO) averages all tokens of the batch;
//!   `seq-mean-token-sum-norm` (Dr. GRPO) sums tokens and divides by the constant
//!   `max_response_len`, then averages completions — as TRL's `dr_grpo` (verl divides the batch sum
//!   by the padded length only, without the completion count; that differs by a constant factor).
//!   Completions without any valid token are left out of the completion count (TRL keeps them,
//!   which shrinks the loss when many completions are masked).
//! - A token is "clipped" when the clipped branch is strictly the larger one (`A > 0, r > 1 + eps_high`
//!   or `A < 0, r < 1 - eps_low`); it then contributes a constant and no gradient. Exactly at the
//!   boundary both branches are equal and the token keeps its full gradient.

use candle_core::{DType, Tensor};

use crate::{Error, Result};

mod config;
pub use config::{KlEstimator, LossAggregation, PolicyLossConfig, RatioLevel};

/// Completions and tokens that enter the loss. Summed over micro-batches and passed back in
/// [`LossInputs::counts`], they make the micro-batch losses add up to the mini-batch loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Completions with at least one valid token.
    pub sequences: usize,
    /// Valid tokens.
    pub tokens: usize,
}

impl std::ops::Add for BatchCounts {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            sequences: self.sequences + o.sequences,
            tokens: self.tokens + o.tokens,
        }
    }
}

/// The tensors of one (micro-)batch of `B` completions padded to `T` tokens.
#[derive(Clone, Copy, Debug)]
pub struct LossInputs<'a> {
    /// Current-policy log-probabilities `[B, T]`, differentiable.
    pub logp: &'a Tensor,
    /// Rollout-time log-probabilities `[B, T]` (treated as constants).
    pub old_logp: &'a Tensor,
    /// Reference-policy log-probabilities `[B, T]`; needed only when `beta > 0`.
    pub ref_logp: Option<&'a Tensor>,
    /// One advantage per completion, `[B]`.
    pub advantages: &'a Tensor,
    /// 1 for completion tokens that count, 0 for padding, `[B, T]`, any float dtype.
    pub mask: &'a Tensor,
    /// Per completion: it hit the length limit. Used when `mask_truncated` is on.
    pub truncated: Option<&'a [bool]>,
    /// Per-token entropy `[B, T]` (differentiable when the bonus is on); needed when
    /// `entropy_coef != 0`, logged when given.
    pub entropy: Option<&'a Tensor>,
    /// Counts of the whole mini-batch when this call sees one micro-batch of it (see
    /// [`batch_counts`]); `None` normalises by this call's own counts.
    pub counts: Option<BatchCounts>,
}

/// Diagnostics of one loss evaluation; token averages are over this call's valid tokens.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LossStats {
    /// The aggregated clipped policy-gradient term alone.
    pub pg_loss: f64,
    /// Fraction of valid tokens whose clipped branch was active.
    pub clip_frac: f64,
    /// ... with `A > 0` and the ratio above `1 + eps_high`.
    pub clip_frac_high: f64,
    /// ... with `A < 0` and the ratio below `1 - eps_low`.
    pub clip_frac_low: f64,
    /// Mean importance ratio.
    pub ratio_mean: f64,
    /// Mean of `old_logp - logp`, a k1 estimate of KL(old || current) (verl's `ppo_kl`).
    pub approx_kl_old: f64,
    /// Mean KL-to-reference estimate, when reference log-probabilities were given.
    pub kl: Option<f64>,
    /// Mean entropy, when given.
    pub entropy: Option<f64>,
    /// Counts of this call.
    pub counts: BatchCounts,
}

impl LossStats {
    /// Combines the statistics of two micro-batches (token-weighted means; `pg_loss` is summed,
    /// which is right when both were normalised by the same mini-batch [`BatchCounts`]).
    pub fn merge(&self, o: &LossStats) -> LossStats {
        let (a, b) = (self.counts.tokens as f64, o.counts.tokens as f64);
        let n = (a + b).max(1.0);
        let mean = |x: f64, y: f64| (x * a + y * b) / n;
        let opt = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => Some(mean(x, y)),
            (x, None) if b == 0.0 => x,
            (None, y) if a == 0.0 => y,
            _ => None,
        };
        LossStats {
            pg_loss: self.pg_loss + o.pg_loss,
            clip_frac: mean(self.clip_frac, o.clip_frac),
            clip_frac_high: mean(self.clip_frac_high, o.clip_frac_high),
            clip_frac_low: mean(self.clip_frac_low, o.clip_frac_low),
            ratio_mean: mean(self.ratio_mean, o.ratio_mean),
            approx_kl_old: mean(self.approx_kl_old, o.approx_kl_old),
            kl: opt(self.kl, o.kl),
            entropy: opt(self.entropy, o.entropy),
            counts: self.counts + o.counts,
        }
    }
}

/// Host copy of a `[B, T]` tensor as f64, row-major.
fn host2(t: &Tensor, name: &str, b: usize, tl: usize) -> Result<Vec<f64>> {
    if t.dims() != [b, tl] {
        return Err(Error::Shape(format!(
            "{name} must be [{b}, {tl}], got {:?}",
            t.dims()
        )));
    }
    Ok(t.detach()
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?)
}

/// The mask after truncation masking (row-major `[B, T]`, values 0/1).
fn effective_mask(
    mask: &Tensor,
    truncated: Option<&[bool]>,
    cfg: &PolicyLossConfig,
) -> Result<(Vec<f64>, usize, usize)> {
    let (b, t) = mask
        .dims2()
        .map_err(|_| Error::Shape(format!("mask must be [B, T], got {:?}", mask.dims())))?;
    let mut m = host2(mask, "mask", b, t)?;
    if let Some(i) = m.iter().position(|&x| x != 0.0 && x != 1.0) {
        return Err(Error::Invalid(format!(
            "mask values must be 0 or 1, found {} at flat index {i}",
            m[i]
        )));
    }
    if let Some(tr) = truncated {
        if tr.len() != b {
            return Err(Error::Shape(format!(
                "truncated has {} flags for {b} completions",
                tr.len()
            )));
        }
        if cfg.mask_truncated {
            for (row, &dropped) in m.chunks_mut(t.max(1)).zip(tr) {
                if dropped {
                    row.fill(0.0);
                }
            }
        }
    }
    Ok((m, b, t))
}

fn counts_of(m: &[f64], t: usize) -> BatchCounts {
    let mut c = BatchCounts::default();
    if t == 0 {
        return c;
    }
    for row in m.chunks(t) {
        let n = row.iter().sum::<f64>() as usize;
        c.tokens += n;
        c.sequences += usize::from(n > 0);
    }
    c
}

/// The completions and tokens of one (micro-)batch that enter the loss, after truncation masking.
pub fn batch_counts(
    mask: &Tensor,
    truncated: Option<&[bool]>,
    cfg: &PolicyLossConfig,
) -> Result<BatchCounts> {
    let (m, _, t) = effective_mask(mask, truncated, cfg)?;
    Ok(counts_of(&m, t))
}

/// Per-token weights `W` such that `loss = sum(W * per_token_loss)` implements the aggregation.
/// `m` is the effective 0/1 mask (row-major `[B, T]`), `counts` the normalising counts.
pub fn aggregation_weights(
    m: &[f64],
    t: usize,
    counts: BatchCounts,
    cfg: &PolicyLossConfig,
) -> Result<Vec<f64>> {
    cfg.validate()?;
    let seqs = counts.sequences.max(1) as f64;
    let toks = counts.tokens.max(1) as f64;
    let mut w = vec![0.0; m.len()];
    if t == 0 {
        return Ok(w);
    }
    for (row_w, row_m) in w.chunks_mut(t).zip(m.chunks(t)) {
        let n = row_m.iter().sum::<f64>();
        if n == 0.0 {
            continue;
        }
        let scale = match cfg.aggregation {
            LossAggregation::SeqMeanTokenMean => 1.0 / (n * seqs),
            LossAggregation::TokenMean => 1.0 / toks,
            LossAggregation::SeqMeanTokenSumNorm => {
                1.0 / (seqs * cfg.max_response_len.unwrap_or(1) as f64)
            }
        };
        for (wi, mi) in row_w.iter_mut().zip(row_m) {
            *wi = mi * scale;
        }
    }
    Ok(w)
}

/// KL estimate from `logp - ref` (host side, for statistics).
fn kl_value(est: KlEstimator, logp: f64, reference: f64) -> f64 {
    match est {
        KlEstimator::K1 => logp - reference,
        KlEstimator::K2 => 0.5 * (logp - reference).powi(2),
        KlEstimator::K3 => {
            let d = (reference - logp).clamp(-20.0, 20.0);
            (d.exp() - d - 1.0).clamp(-10.0, 10.0)
        }
    }
}

/// The same estimate on tensors, differentiable in `logp`.
fn kl_tensor(est: KlEstimator, logp: &Tensor, reference: &Tensor) -> Result<Tensor> {
    Ok(match est {
        KlEstimator::K1 => (logp - reference)?,
        KlEstimator::K2 => ((logp - reference)?.sqr()? * 0.5)?,
        KlEstimator::K3 => {
            let d = (reference - logp)?.clamp(-20.0, 20.0)?;
            ((d.exp()? - d)? - 1.0)?.clamp(-10.0, 10.0)?
        }
    })
}

fn upload(v: Vec<f64>, like: &Tensor) -> Result<Tensor> {
    let (b, t) = like.dims2()?;
    Ok(Tensor::from_vec(v, (b, t), like.device())?.to_dtype(like.dtype())?)
}

/// Scalar policy loss (differentiable in `logp` and, when the bonus is on, `entropy`) and statistics.
///
/// Errors on shape mismatches, mask values other than 0/1, a missing `ref_logp` with `beta > 0`,
/// a missing `entropy` with `entropy_coef != 0`, or an invalid config.
pub fn policy_loss(inp: &LossInputs, cfg: &PolicyLossConfig) -> Result<(Tensor, LossStats)> {
    cfg.validate()?;
    let (m, b, t) = effective_mask(inp.mask, inp.truncated, cfg)?;
    let logp_h = host2(inp.logp, "logp", b, t)?;
    let old_h = host2(inp.old_logp, "old_logp", b, t)?;
    if inp.advantages.dims() != [b] {
        return Err(Error::Shape(format!(
            "advantages must be [{b}], got {:?}",
            inp.advantages.dims()
        )));
    }
    let adv = inp
        .advantages
        .detach()
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?;
    let ref_h = match inp.ref_logp {
        Some(r) => Some(host2(r, "ref_logp", b, t)?),
        None if cfg.beta > 0.0 => {
            return Err(Error::Invalid("beta > 0 needs ref_logp".into()));
        }
        None => None,
    };
    let ent_h = match inp.entropy {
        Some(e) => Some(host2(e, "entropy", b, t)?),
        None if cfg.entropy_coef != 0.0 => {
            return Err(Error::Invalid("entropy_coef != 0 needs entropy".into()));
        }
        None => None,
    };
    let local = counts_of(&m, t);
    if let Some(c) = inp.counts {
        if c.sequences < local.sequences || c.tokens < local.tokens {
            return Err(Error::Invalid(format!(
                "counts {c:?} are smaller than this batch's own {local:?}"
            )));
        }
    }
    let weights = aggregation_weights(&m, t, inp.counts.unwrap_or(local), cfg)?;

    // Host pass: ratio values, which branch of the clip is active, and the statistics.
    let (lo, hi) = (1.0 - cfg.eps_low, 1.0 + cfg.eps_high);
    let mut seq_log_ratio = vec![0.0; b];
    if cfg.ratio == RatioLevel::Sequence && t > 0 {
        for (i, (lp, old)) in logp_h.chunks(t).zip(old_h.chunks(t)).enumerate() {
            let row_m = &m[i * t..(i + 1) * t];
            let n = row_m.iter().sum::<f64>();
            if n > 0.0 {
                let s: f64 = (0..t).map(|j| row_m[j] * (lp[j] - old[j])).sum();
                seq_log_ratio[i] = (s / n).min(10.0);
            }
        }
    }
    let mut pg_w = vec![0.0; b * t]; // coefficient of the differentiable ratio
    let mut pg_k = vec![0.0; b * t]; // constant part (clipped tokens)
    let mut st = LossStats {
        counts: local,
        ..Default::default()
    };
    let (mut kl_sum, mut ent_sum) = (0.0, 0.0);
    for k in 0..b * t {
        let i = k / t;
        let a = adv[i];
        let r = match cfg.ratio {
            RatioLevel::Token => (logp_h[k] - old_h[k]).clamp(-20.0, 20.0).exp(),
            RatioLevel::Sequence => seq_log_ratio[i].exp(),
        };
        let clip_high = a > 0.0 && r > hi;
        let clip_low = a < 0.0 && r < lo;
        if clip_high || clip_low {
            pg_k[k] = -a * r.clamp(lo, hi);
        } else {
            pg_w[k] = -a;
        }
        st.pg_loss += weights[k] * (-a * r).max(-a * r.clamp(lo, hi));
        if m[k] > 0.0 {
            st.clip_frac_high += f64::from(u8::from(clip_high));
            st.clip_frac_low += f64::from(u8::from(clip_low));
            st.ratio_mean += r;
            st.approx_kl_old += old_h[k] - logp_h[k];
            if let Some(rh) = &ref_h {
                kl_sum += kl_value(cfg.kl_estimator, logp_h[k], rh[k]);
            }
            if let Some(eh) = &ent_h {
                ent_sum += eh[k];
            }
        }
    }
    let n = local.tokens.max(1) as f64;
    st.clip_frac_high /= n;
    st.clip_frac_low /= n;
    st.clip_frac = st.clip_frac_high + st.clip_frac_low;
    st.ratio_mean /= n;
    st.approx_kl_old /= n;
    st.kl = ref_h.as_ref().map(|_| kl_sum / n);
    st.entropy = ent_h.as_ref().map(|_| ent_sum / n);

    // Graph pass: only `logp` (and the entropy) carry gradients.
    let logp = inp.logp;
    let ratio = match cfg.ratio {
        RatioLevel::Token => (logp - inp.old_logp.detach())?.clamp(-20.0, 20.0)?.exp()?,
        RatioLevel::Sequence => {
            let per_token: Vec<f64> = (0..b * t).map(|k| seq_log_ratio[k / t]).collect();
            ((logp - logp.detach())? + upload(per_token, logp)?)?.exp()?
        }
    };
    let mut per_token = ((ratio * upload(pg_w, logp)?)? + upload(pg_k, logp)?)?;
    // Both `Option`s were checked against their coefficients above.
    if let (true, Some(reference)) = (cfg.beta > 0.0, inp.ref_logp) {
        let kl = kl_tensor(cfg.kl_estimator, logp, &reference.detach())?;
        per_token = (per_token + (kl * cfg.beta)?)?;
    }
    if let (true, Some(ent)) = (cfg.entropy_coef != 0.0, inp.entropy) {
        per_token = (per_token - (ent.to_dtype(logp.dtype())? * cfg.entropy_coef)?)?;
    }
    let loss = (per_token * upload(weights, logp)?)?.sum_all()?;
    Ok((loss, st))
}

#[cfg(test)]
mod tests;
