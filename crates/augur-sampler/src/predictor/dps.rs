//! DPS predictor (Dynamics-Predictive Sampling, ICLR 2026): a hidden-Markov model of each
//! prompt's solving state, following the official `BayesianHMMSampler`.
//!
//! States: 0 = unsolved (s = 0), 1 = partial (0 < s < k), 2 = solved (s = k). Per prompt:
//! Dirichlet counts α (3×3, indexed `[next][prev]`, prior all α0 = 1), the predicted
//! next-state distribution π and the last filtered state π_before. With P = α normalised over
//! `next` (each column sums to 1):
//! - observed prompt with state y: ξ = normalize(onehot(y) ⊗ π_before ⊙ P),
//!   α ← λα + (1−λ)α0 + ξ, π_before ← onehot(y), π ← normalize(P_new · onehot(y));
//! - every other prompt observed at least once: α ← λα + (1−λ)α0, π_before ← π,
//!   π ← normalize(P_new · π);
//! - never-observed prompts stay at the prior (for them the update is the identity).
//!
//! Selection uses π[partial]. The unobserved update of a prompt converges: for λ < 1 its α
//! decays to α0 (all columns of P equal, so π lands on a fixed point), and with λ = 1 π is a
//! power iteration of a fixed P. Observe therefore sweeps only the *settling* prompts, kept as a
//! sorted id list: a prompt joins it when observed and leaves it once its next updates can move
//! its state by no more than `SETTLE_TOL` in all (a bound, not a guess: see `settled`). A
//! settled prompt's cell stays as it is until its next observation, which equals the eager
//! update of every seen prompt to within that tolerance, far below the f32 the predictions are
//! handed out in. So observe costs O(B · steps to settle), about B · 100 cells at λ = 0.7,
//! instead of O(seen prompts); the sweep still runs in parallel over 120-byte cells.
//!
//! State is f64: in f32 the decay merges distinct predictions (most prompts of a long run
//! land on exactly the same π), which made selection depend on tie-breaking and starved
//! prompts (issue 14). Predictions are handed out as f32, like every predictor's.

use super::{check_len, ensure_len, PredictCtx, Predictor, Quantity};
use crate::error::{Result, SamplerError};
use crate::outcome::{validate_batch, Outcome};
use crate::random::{for_each_chunk, hash_unit, CHUNK};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Hyper-parameters of the DPS predictor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpsConfig {
    /// Decay λ of the transition counts (paper: 0.5 Countdown, 0.7 MATH).
    pub lambda: f64,
    /// Prior Dirichlet count of every transition (paper: 1).
    pub alpha0: f64,
    /// Prior state distribution (unsolved, partial, solved) of unseen prompts.
    pub prior_pi: [f64; 3],
}

impl Default for DpsConfig {
    fn default() -> Self {
        DpsConfig {
            lambda: 0.7,
            alpha0: 1.0,
            prior_pi: [1.0 / 3.0; 3],
        }
    }
}

impl DpsConfig {
    /// Rejects decays outside [0, 1], non-positive priors and a prior π that is not a distribution.
    pub fn validate(&self) -> Result<()> {
        let s: f64 = self.prior_pi.iter().sum();
        let ok = (0.0..=1.0).contains(&self.lambda)
            && self.alpha0 > 0.0
            && self.alpha0.is_finite()
            && self.prior_pi.iter().all(|&p| p >= 0.0)
            && (s - 1.0).abs() < 1e-4;
        if !ok {
            return Err(SamplerError::InvalidConfig(format!(
                "dps predictor needs 0 <= lambda <= 1, alpha0 > 0, prior_pi a distribution; got {self:?}"
            )));
        }
        Ok(())
    }
}

/// One prompt's HMM state (120 bytes, streamed by the per-step sweep).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpsCell {
    /// Dirichlet counts, row-major `[next][prev]`.
    pub alpha: [f64; 9],
    /// Predicted state distribution for the next rollout.
    pub pi: [f64; 3],
    /// Filtered state distribution after the last update.
    pub pi_before: [f64; 3],
}

/// How far a settled prompt's state may still drift under later unobserved updates (π in L1,
/// α relative to α0): about 45 f64 ulps of 1, and 10^7 times below an f32 prediction's step.
const SETTLE_TOL: f64 = 1e-14;

/// The DPS predictor: one [`DpsCell`] per prompt id.
#[derive(Debug, Clone)]
pub struct DpsPredictor {
    cfg: DpsConfig,
    step: u32,
    cells: Vec<DpsCell>,
    /// Step (1-based) of each prompt's last observation; 0 = never observed.
    last_obs: Vec<u32>,
    /// π[partial] per prompt, a flat copy of `cells[i].pi[1]` so whole-pool selection streams
    /// 4 bytes per prompt instead of a 120-byte cell.
    partial: Vec<f32>,
    /// Seen prompts whose state has not settled yet, in increasing id order: the only cells an
    /// unobserved update still changes.
    settling: Vec<u32>,
}

/// Flat, compact serialised form (parallel arrays instead of one object per prompt).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DpsState {
    cfg: DpsConfig,
    step: u32,
    alpha: Vec<f64>,
    pi: Vec<f64>,
    pi_before: Vec<f64>,
    last_obs: Vec<u32>,
    /// The settling ids, so a resumed run freezes the same cells as the one that kept running.
    /// Absent in states saved before it existed (every seen cell was updated each step then):
    /// every seen prompt settles again from where it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    settling: Option<Vec<u32>>,
}

fn normalize3(v: [f64; 3]) -> [f64; 3] {
    let s = v[0] + v[1] + v[2];
    if s > 0.0 {
        let r = 1.0 / s;
        [v[0] * r, v[1] * r, v[2] * r]
    } else {
        [1.0 / 3.0; 3]
    }
}

/// Expected transition matrix P[next][prev] = α[next][prev] / Σ_next α[next][prev].
fn transition(alpha: &[f64; 9]) -> [f64; 9] {
    let mut p = [0.0; 9];
    for prev in 0..3 {
        let r = 1.0 / (alpha[prev] + alpha[3 + prev] + alpha[6 + prev]);
        for next in 0..3 {
            p[next * 3 + prev] = alpha[next * 3 + prev] * r;
        }
    }
    p
}

/// Dobrushin's coefficient of the column-stochastic P: ½ max over column pairs of their L1
/// distance. P moves the difference of two distributions by at most this factor (in L1), so it
/// bounds how fast repeated updates with one P converge.
fn contraction(p: &[f64; 9]) -> f64 {
    let col_dist = |i: usize, j: usize| {
        (0..3)
            .map(|n| (p[n * 3 + i] - p[n * 3 + j]).abs())
            .sum::<f64>()
    };
    0.5 * col_dist(0, 1).max(col_dist(0, 2)).max(col_dist(1, 2))
}

/// Whether a cell, just moved from `old` to `new` by an unobserved update, has settled: all its
/// later unobserved updates together move it by at most `SETTLE_TOL`.
/// - α: unchanged (λ = 1, or an exact fixed point), or within SETTLE_TOL·α0 of α0, its limit
///   for λ < 1 (α − α0 shrinks by λ each step).
/// - π: with P (nearly) fixed, each step's change of π shrinks by P's contraction factor δ, so
///   the remaining drift is at most |Δπ|₁ · δ / (1 − δ).
fn settled(old: &DpsCell, new: &DpsCell, a0: f64) -> bool {
    // Cheapest test first: while α is still decaying (most cells, most steps) it fails at once.
    let alpha_fixed =
        new.alpha.iter().all(|&a| (a - a0).abs() <= SETTLE_TOL * a0) || old.alpha == new.alpha;
    if !alpha_fixed {
        return false;
    }
    if old == new {
        return true;
    }
    let delta = contraction(&transition(&new.alpha));
    let moved: f64 = (0..3).map(|i| (new.pi[i] - old.pi[i]).abs()).sum();
    delta < 1.0 && moved * delta <= SETTLE_TOL * (1.0 - delta)
}

/// P · v for a 3-vector v over `prev`.
fn apply(p: &[f64; 9], v: &[f64; 3]) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (next, o) in out.iter_mut().enumerate() {
        *o = p[next * 3] * v[0] + p[next * 3 + 1] * v[1] + p[next * 3 + 2] * v[2];
    }
    out
}

impl DpsPredictor {
    /// Builds an empty predictor (every prompt at the prior).
    pub fn new(cfg: DpsConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(DpsPredictor {
            cfg,
            step: 0,
            cells: Vec::new(),
            last_obs: Vec::new(),
            partial: Vec::new(),
            settling: Vec::new(),
        })
    }

    /// Seen prompts whose state is still settling (the cells the next observe updates besides
    /// the observed ones), in increasing id order.
    pub fn settling(&self) -> &[u32] {
        &self.settling
    }

    fn prior_cell(&self) -> DpsCell {
        DpsCell {
            alpha: [self.cfg.alpha0; 9],
            pi: self.cfg.prior_pi,
            pi_before: self.cfg.prior_pi,
        }
    }

    /// Step (1-based) of the last observation of `id`; 0 if never observed.
    pub fn last_observed(&self, id: u32) -> u32 {
        self.last_obs.get(id as usize).copied().unwrap_or(0)
    }

    /// Current state of one prompt (the prior cell if never seen).
    pub fn cell(&self, id: u32) -> DpsCell {
        self.cells
            .get(id as usize)
            .copied()
            .unwrap_or_else(|| self.prior_cell())
    }

    fn observed_update(c: &mut DpsCell, y: usize, lambda: f64, a0: f64) {
        let p_old = transition(&c.alpha);
        let mut xi = [0.0f64; 3];
        for (prev, x) in xi.iter_mut().enumerate() {
            *x = c.pi_before[prev] * p_old[y * 3 + prev];
        }
        let xi = normalize3(xi);
        for a in c.alpha.iter_mut() {
            *a = lambda * *a + (1.0 - lambda) * a0;
        }
        for (a, x) in c.alpha[y * 3..y * 3 + 3].iter_mut().zip(xi) {
            *a += x;
        }
        let mut onehot = [0.0f64; 3];
        onehot[y] = 1.0;
        c.pi = normalize3(apply(&transition(&c.alpha), &onehot));
        c.pi_before = onehot;
    }

    fn unobserved_update(c: &mut DpsCell, lambda: f64, a0: f64) {
        for a in c.alpha.iter_mut() {
            *a = lambda * *a + (1.0 - lambda) * a0;
        }
        c.pi_before = c.pi;
        c.pi = normalize3(apply(&transition(&c.alpha), &c.pi));
    }

    fn quantity(c: &DpsCell, q: Quantity, seed: u64, index: u64) -> f32 {
        let mean = 0.5 * c.pi[1] + c.pi[2];
        match q {
            Quantity::Mean => mean as f32,
            Quantity::Partial => c.pi[1] as f32,
            Quantity::Std => {
                let v = c.pi[0] * mean * mean
                    + c.pi[1] * (0.5 - mean) * (0.5 - mean)
                    + c.pi[2] * (1.0 - mean) * (1.0 - mean);
                v.max(0.0).sqrt() as f32
            }
            Quantity::Sample => {
                let u = hash_unit(seed, index) as f64;
                if u < c.pi[0] {
                    0.0
                } else if u < c.pi[0] + c.pi[1] {
                    0.5
                } else {
                    1.0
                }
            }
        }
    }
}

impl Predictor for DpsPredictor {
    fn name(&self) -> &str {
        "dps"
    }

    /// Success rate is summarised as E[v(state)] with v = (0, 0.5, 1); Partial is π[partial].
    fn predict(&self, ids: &[u32], q: Quantity, ctx: PredictCtx, out: &mut [f32]) -> Result<()> {
        check_len(ids, out)?;
        let prior = self.prior_cell();
        let prior_partial = prior.pi[1] as f32;
        let work = |c: usize, ids: &[u32], out: &mut [f32]| {
            if q == Quantity::Partial {
                for (o, &id) in out.iter_mut().zip(ids) {
                    *o = self
                        .partial
                        .get(id as usize)
                        .copied()
                        .unwrap_or(prior_partial);
                }
                return;
            }
            for (j, (o, &id)) in out.iter_mut().zip(ids).enumerate() {
                let cell = self.cells.get(id as usize).unwrap_or(&prior);
                *o = Self::quantity(cell, q, ctx.seed, (c * CHUNK + j) as u64);
            }
        };
        for_each_chunk(ids, out, work);
        Ok(())
    }

    fn observe(&mut self, outcomes: &[Outcome]) -> Result<()> {
        validate_batch(outcomes)?;
        self.step = self
            .step
            .checked_add(1)
            .ok_or_else(|| SamplerError::InvalidState("dps step counter overflow".into()))?;
        let (step, lambda, a0) = (self.step, self.cfg.lambda, self.cfg.alpha0);
        let prior = self.prior_cell();
        for o in outcomes {
            ensure_len(&mut self.cells, o.id, prior)?;
            ensure_len(&mut self.last_obs, o.id, 0)?;
            ensure_len(&mut self.partial, o.id, prior.pi[1] as f32)?;
            let c = &mut self.cells[o.id as usize];
            Self::observed_update(c, o.state() as usize, lambda, a0);
            self.last_obs[o.id as usize] = step;
            self.partial[o.id as usize] = c.pi[1] as f32;
        }
        // The settling prompts not observed now get the unobserved update, chunk by chunk in
        // parallel (each chunk owns its cells and finds its ids by binary search); those that
        // settle leave the list. The observed ones join it.
        let settling = std::mem::take(&mut self.settling);
        let mut observed: Vec<u32> = outcomes.iter().map(|o| o.id).collect();
        observed.sort_unstable();
        let last_obs = &self.last_obs;
        let in_range = |ids: &[u32], lo: u32, hi: u32| -> std::ops::Range<usize> {
            ids.partition_point(|&id| id < lo)..ids.partition_point(|&id| id < hi)
        };
        let parts: Vec<Vec<u32>> = self
            .cells
            .par_chunks_mut(CHUNK)
            .zip(self.partial.par_chunks_mut(CHUNK))
            .enumerate()
            .map(|(ci, (cells, partial))| {
                let lo = (ci * CHUNK) as u32;
                let hi = lo + cells.len() as u32;
                let ids = &settling[in_range(&settling, lo, hi)];
                let mut joining = observed[in_range(&observed, lo, hi)].iter().peekable();
                let mut next = Vec::with_capacity(ids.len() + joining.len());
                let mut visit = |id: u32, c: &mut DpsCell, p: &mut f32| {
                    if last_obs[id as usize] == step {
                        return; // observed now: it joins below, in order
                    }
                    let old = *c;
                    Self::unobserved_update(c, lambda, a0);
                    *p = c.pi[1] as f32;
                    if !settled(&old, c, a0) {
                        while let Some(&&o) = joining.peek() {
                            if o > id {
                                break;
                            }
                            next.push(o);
                            joining.next();
                        }
                        next.push(id);
                    }
                };
                for &id in ids {
                    let i = (id - lo) as usize;
                    visit(id, &mut cells[i], &mut partial[i]);
                }
                next.extend(joining);
                next
            })
            .collect();
        self.settling = parts.concat();
        Ok(())
    }

    fn save(&self) -> Result<serde_json::Value> {
        let st = DpsState {
            cfg: self.cfg.clone(),
            step: self.step,
            alpha: self.cells.iter().flat_map(|c| c.alpha).collect(),
            pi: self.cells.iter().flat_map(|c| c.pi).collect(),
            pi_before: self.cells.iter().flat_map(|c| c.pi_before).collect(),
            last_obs: self.last_obs.clone(),
            settling: Some(self.settling.clone()),
        };
        Ok(serde_json::to_value(st)?)
    }

    fn load(&mut self, state: serde_json::Value) -> Result<()> {
        let st: DpsState = serde_json::from_value(state)
            .map_err(|e| SamplerError::InvalidState(format!("dps predictor: {e}")))?;
        st.cfg.validate()?;
        let n = st.last_obs.len();
        if st.alpha.len() != 9 * n || st.pi.len() != 3 * n || st.pi_before.len() != 3 * n {
            return Err(SamplerError::InvalidState(format!(
                "dps predictor: array lengths {}/{}/{} do not fit {n} prompts",
                st.alpha.len(),
                st.pi.len(),
                st.pi_before.len()
            )));
        }
        let cells = (0..n)
            .map(|i| DpsCell {
                alpha: st.alpha[9 * i..9 * i + 9].try_into().expect("9 floats"),
                pi: st.pi[3 * i..3 * i + 3].try_into().expect("3 floats"),
                pi_before: st.pi_before[3 * i..3 * i + 3].try_into().expect("3 floats"),
            })
            .collect::<Vec<DpsCell>>();
        let seen = |id: u32| st.last_obs.get(id as usize).is_some_and(|&l| l != 0);
        let settling = match st.settling {
            Some(ids) => {
                if !ids.windows(2).all(|w| w[0] < w[1]) {
                    return Err(SamplerError::InvalidState(
                        "dps predictor: settling ids are not in increasing order".into(),
                    ));
                }
                if let Some(bad) = ids.iter().find(|&&id| !seen(id)) {
                    return Err(SamplerError::InvalidState(format!(
                        "dps predictor: settling prompt {bad} was never observed"
                    )));
                }
                ids
            }
            None => (0..n as u32).filter(|&id| seen(id)).collect(),
        };
        *self = DpsPredictor {
            cfg: st.cfg,
            step: st.step,
            partial: cells.iter().map(|c| c.pi[1] as f32).collect(),
            cells,
            last_obs: st.last_obs,
            settling,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close<T: Copy + Into<f64> + std::fmt::Debug>(a: &[T], b: &[T]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!(((*x).into() - (*y).into()).abs() < 1e-12, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn first_observation_from_prior() {
        // λ = 0.7, α = ones, π_before = (1/3,1/3,1/3), observe partial (y = 1).
        // P = 1/3 everywhere → ξ row 1 = normalize(1/9,1/9,1/9) = (1/3,1/3,1/3).
        // α row 1 = 1 + 1/3; column sums = 10/3 → π = P[:,1] = (0.3, 0.4, 0.3).
        let mut p = DpsPredictor::new(DpsConfig::default()).unwrap();
        p.observe(&[Outcome::new(4, 2, 4)]).unwrap();
        let c = p.cell(4);
        let r = 4.0 / 3.0;
        close(&c.alpha, &[1.0, 1.0, 1.0, r, r, r, 1.0, 1.0, 1.0]);
        close(&c.pi, &[0.3, 0.4, 0.3]);
        close(&c.pi_before, &[0.0, 1.0, 0.0]);
        assert_eq!(p.last_observed(4), 1);
        // Unseen prompts stay at the prior and are not touched by the sweep.
        close(&p.cell(0).pi, &[1.0 / 3.0; 3]);
        assert_eq!(p.last_observed(0), 0);
    }

    #[test]
    fn second_observation_uses_pi_before_and_decay() {
        let mut p = DpsPredictor::new(DpsConfig::default()).unwrap();
        p.observe(&[Outcome::new(0, 2, 4)]).unwrap(); // partial
        p.observe(&[Outcome::new(0, 4, 4)]).unwrap(); // solved, y = 2
                                                      // Before: α row1 = 4/3, others 1; π_before = e1. P_old[2][1] = 1/(10/3) = 0.3.
                                                      // ξ = normalize(e2 ⊗ e1 ⊙ P) → only [2][1] = 1.
                                                      // α ← 0.7α + 0.3 + ξ: row0 = 1, row1 = 0.7*4/3+0.3 = 1.2333.., row2 = (1, 2, 1).
        let c = p.cell(0);
        let r1 = 0.7 * 4.0 / 3.0 + 0.3;
        close(&c.alpha, &[1.0, 1.0, 1.0, r1, r1, r1, 1.0, 2.0, 1.0]);
        // π = P_new[:,2] = α[:,2] / (1 + r1 + 1).
        let s = 2.0 + r1;
        close(&c.pi, &[1.0 / s, r1 / s, 1.0 / s]);
        close(&c.pi_before, &[0.0, 0.0, 1.0]);
    }

    #[test]
    fn unobserved_seen_prompt_decays_and_propagates() {
        let mut p = DpsPredictor::new(DpsConfig::default()).unwrap();
        p.observe(&[Outcome::new(0, 2, 4)]).unwrap();
        p.observe(&[Outcome::new(1, 0, 4)]).unwrap(); // prompt 0 not observed this step
        let c = p.cell(0);
        // α ← 0.7α + 0.3: row1 = 0.7*4/3 + 0.3 = r1, other rows 1.
        let r1 = 0.7 * 4.0 / 3.0 + 0.3;
        close(&c.alpha, &[1.0, 1.0, 1.0, r1, r1, r1, 1.0, 1.0, 1.0]);
        // π_before ← old π = (0.3,0.4,0.3); every column of P_new = (1, r1, 1)/(2+r1).
        close(&c.pi_before, &[0.3, 0.4, 0.3]);
        let s = 2.0 + r1;
        close(&c.pi, &[1.0 / s, r1 / s, 1.0 / s]);
        let mut out = [0.0; 2];
        p.predict(
            &[0, 99],
            Quantity::Partial,
            PredictCtx { k: 4, seed: 0 },
            &mut out,
        )
        .unwrap();
        assert!((out[0] as f64 - r1 / s).abs() < 1e-7, "{out:?}");
        assert!((out[1] as f64 - 1.0 / 3.0).abs() < 1e-7, "{out:?}");
    }

    #[test]
    fn save_load_roundtrip_is_exact() {
        let mut p = DpsPredictor::new(DpsConfig::default()).unwrap();
        for step in 0..5u32 {
            p.observe(&[Outcome::new(step % 3, step % 5, 4)]).unwrap();
        }
        let v = serde_json::to_string(&p.save().unwrap()).unwrap();
        let mut q = DpsPredictor::new(DpsConfig::default()).unwrap();
        q.load(serde_json::from_str(&v).unwrap()).unwrap();
        assert_eq!(p.cells, q.cells);
        assert_eq!(p.last_obs, q.last_obs);
        assert_eq!(p.step, q.step);
        assert_eq!(p.settling, q.settling);
        assert_eq!(q.settling(), &[0, 1, 2]);
        assert!(q.load(serde_json::json!({"bad": 1})).is_err());
    }
}
