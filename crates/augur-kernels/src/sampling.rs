//! Fused last-position sampling: temperature, top-k / top-p / min-p truncation and one draw per
//! row from logits `[B, V]`, returning `B` (token, logprob) pairs instead of the logits.
//!
//! Semantics (the CUDA kernel `kernels/sampling.cu` and [`sample_row`] share them):
//! * `temperature == 0` is greedy: the largest logit, the lowest id on ties.
//! * Otherwise each token weighs `w = exp((x − max) / T)`, `Z = Σ w`, and a token is kept when
//!   its logit reaches every active floor:
//!   - top-k: the k-th largest logit (ties with it are all kept);
//!   - top-p: the largest logit `t` whose tokens `{x ≥ t}` hold at least `top_p · Z` (the
//!     shortest head of the sorted vocabulary that reaches `top_p`, ties included);
//!   - min-p: `max + T·ln(min_p)`, i.e. `p ≥ min_p · p_max`.
//! * The draw: `u` from Philox4x32-10 ([`RowRng`]); the token is the first kept id, in id order,
//!   whose running kept weight exceeds `u · Σ kept w`.
//! * The logprob is `log_softmax(raw logits)[token]` at temperature 1, before truncation: what
//!   the training forward recomputes (as in augur-rollout's sampler).
//!
//! The kernel sums in a different order than the CPU, so the two agree exactly except when `u`
//! falls within float rounding of a boundary between two tokens.

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use crate::philox::RowRng;
use crate::{Error, Result};

/// The truncation and temperature of one sampling call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingConfig {
    pub temperature: f32,
    /// 0 turns top-k off.
    pub top_k: usize,
    /// 1 turns top-p off.
    pub top_p: f32,
    /// 0 turns min-p off.
    pub min_p: f32,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
        }
    }
}

impl SamplingConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: f32| Err(Error::Invalid(format!("{what} = {v} is out of range")));
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad("temperature (must be finite and >= 0)", self.temperature);
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p (must be in (0, 1])", self.top_p);
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p (must be in [0, 1])", self.min_p);
        }
        Ok(())
    }
}

/// One row's draw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampled {
    pub token: u32,
    /// `log_softmax(raw logits)[token]`.
    pub logprob: f32,
}

/// Samples one token per row of `logits: [B, V]` (CPU: the twin below; CUDA: the fused kernel,
/// and only `B` pairs come back to the host). `rows[b]` is row `b`'s random stream.
pub fn sample_last(logits: &Tensor, cfg: &SamplingConfig, rows: &[RowRng]) -> Result<Vec<Sampled>> {
    cfg.validate()?;
    let (b, v) = logits
        .dims2()
        .map_err(|_| Error::Invalid(format!("logits must be [B, V], got {:?}", logits.dims())))?;
    if rows.len() != b {
        return Err(Error::Invalid(format!(
            "{} random streams for {b} rows of logits",
            rows.len()
        )));
    }
    if v == 0 {
        return Err(Error::Invalid(
            "logits have an empty vocabulary axis".into(),
        ));
    }
    if v > 1 << 24 {
        return Err(Error::Invalid(format!("a vocabulary of {v} is above 2^24")));
    }
    #[cfg(feature = "cuda")]
    if logits.device().is_cuda() {
        return crate::cuda::sample_last(logits, cfg, rows);
    }
    if !logits.device().is_cpu() {
        return Err(Error::Invalid(format!(
            "fused sampling runs on CPU or (built with --features cuda) CUDA, not {:?}",
            logits.device().location()
        )));
    }
    let rows_data = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    Ok(rows_data
        .par_iter()
        .zip(rows.par_iter())
        .map(|(x, rng)| sample_row(x, cfg, rng))
        .collect())
}

/// The CPU twin for one row (see the module docs for the semantics).
pub fn sample_row(x: &[f32], cfg: &SamplingConfig, rng: &RowRng) -> Sampled {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let raw_sum: f32 = x.iter().map(|&l| (l - max).exp()).sum();
    let logprob_of = |t: usize| x[t] - max - raw_sum.ln();
    if cfg.temperature == 0.0 {
        let token = argmax(x);
        return Sampled {
            token: token as u32,
            logprob: logprob_of(token),
        };
    }
    let inv_t = 1.0 / cfg.temperature;
    let w: Vec<f32> = x.iter().map(|&l| ((l - max) * inv_t).exp()).collect();
    let mut floor = f32::NEG_INFINITY;
    if cfg.top_k > 0 && cfg.top_k < x.len() {
        floor = floor.max(kth_largest(x, cfg.top_k));
    }
    if cfg.top_p < 1.0 {
        floor = floor.max(top_p_floor(x, &w, cfg.top_p));
    }
    if cfg.min_p > 0.0 {
        floor = floor.max(max + cfg.temperature * cfg.min_p.ln());
    }
    let kept = |i: usize| x[i] >= floor;
    let mass: f32 = (0..x.len()).filter(|&i| kept(i)).map(|i| w[i]).sum();
    let target = rng.uniform() * mass;
    let mut cum = 0f32;
    let mut last = argmax(x);
    for i in (0..x.len()).filter(|&i| kept(i) && w[i] > 0.0) {
        cum += w[i];
        last = i;
        if target < cum {
            break;
        }
    }
    Sampled {
        token: last as u32,
        logprob: logprob_of(last),
    }
}

fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// The k-th largest value (1-based), in O(V).
fn kth_largest(x: &[f32], k: usize) -> f32 {
    let mut v = x.to_vec();
    let (_, kth, _) = v.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    *kth
}

/// The top-p floor: walk the vocabulary in descending logit order until the weight reaches
/// `top_p · Z`. Only a growing head is sorted (the nucleus is usually small).
fn top_p_floor(x: &[f32], w: &[f32], top_p: f32) -> f32 {
    let target = top_p * w.iter().sum::<f32>();
    let mut order: Vec<usize> = (0..x.len()).collect();
    let desc = |a: &usize, b: &usize| x[*b].total_cmp(&x[*a]);
    let mut head = 64.min(x.len());
    loop {
        if head < order.len() {
            order.select_nth_unstable_by(head, desc);
        }
        order[..head].sort_unstable_by(desc);
        let mut cum = 0f32;
        for &i in &order[..head] {
            cum += w[i];
            if cum >= target {
                return x[i];
            }
        }
        if head == order.len() {
            // Rounding kept the sum just under the target: everything stays.
            return f32::NEG_INFINITY;
        }
        head = (head * 4).min(order.len());
    }
}
