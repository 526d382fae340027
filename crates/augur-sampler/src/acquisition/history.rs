//! History-filtering baselines: rules that remember each prompt's recent outcomes themselves
//! and skip prompts expected to be zero-variance, without a probabilistic predictor.
//!
//! - HR: drop prompts that were all-correct the last time they were rolled out (in
//!   epoch-based training that is "in the previous epoch"), draw uniformly from the rest.
//! - GRESO (arXiv 2506.02177): a prompt whose last z rollout groups were all zero-variance is
//!   kept with probability p_easy^z (all-correct streak) or p_hard^z (all-wrong streak);
//!   after each step p_easy / p_hard move by ±Δ toward target zero-variance ratios
//!   (official code: Δ = 0.01, clipped to [0.05, 0.95]).

use super::{Acquisition, Scores};
use crate::error::{Result, SamplerError};
use crate::outcome::{validate_batch, Outcome};
use crate::predictor::Quantity;
use rand::seq::index;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// HR: skip prompts whose last group was all-correct.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HistoryReject {
    /// Per prompt id: 1 if the last observed group was all-correct.
    solved: Vec<u8>,
}

impl Acquisition for HistoryReject {
    fn name(&self) -> &str {
        "hr"
    }
    fn needs(&self) -> Vec<Quantity> {
        Vec::new()
    }
    fn select(
        &mut self,
        c: &[u32],
        b: usize,
        _: &Scores,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<usize>> {
        let is_solved = |id: u32| self.solved.get(id as usize).copied().unwrap_or(0) == 1;
        let (keep, drop): (Vec<usize>, Vec<usize>) = (0..c.len()).partition(|&p| !is_solved(c[p]));
        if keep.len() >= b {
            return Ok(index::sample(rng, keep.len(), b)
                .into_iter()
                .map(|j| keep[j])
                .collect());
        }
        let fill = index::sample(rng, drop.len(), b - keep.len());
        Ok(keep
            .iter()
            .copied()
            .chain(fill.into_iter().map(|j| drop[j]))
            .collect())
    }
    fn observe(&mut self, outcomes: &[Outcome]) -> Result<()> {
        validate_batch(outcomes)?;
        for o in outcomes {
            crate::predictor::ensure_len(&mut self.solved, o.id, 0)?;
            self.solved[o.id as usize] = u8::from(o.successes == o.rollouts);
        }
        Ok(())
    }
    fn save(&self) -> Result<serde_json::Value> {
        Ok(serde_json::to_value(self)?)
    }
    fn load(&mut self, state: serde_json::Value) -> Result<()> {
        *self = serde_json::from_value(state)
            .map_err(|e| SamplerError::InvalidState(format!("hr: {e}")))?;
        Ok(())
    }
}

/// GRESO settings; defaults follow the paper and its official code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GresoConfig {
    /// Initial keep probability base for all-correct streaks.
    pub p_easy: f32,
    /// Initial keep probability base for all-wrong streaks.
    pub p_hard: f32,
    /// Target fraction of all-correct groups per step.
    pub target_easy: f32,
    /// Target fraction of all-wrong groups per step.
    pub target_hard: f32,
    /// Step Δ of the adaptive probabilities.
    pub delta: f32,
    /// Lower clip of p_easy / p_hard.
    pub min_p: f32,
    /// Upper clip of p_easy / p_hard.
    pub max_p: f32,
}

impl Default for GresoConfig {
    fn default() -> Self {
        GresoConfig {
            p_easy: 0.5,
            p_hard: 0.5,
            target_easy: 1.0 / 12.0,
            target_hard: 2.0 / 12.0,
            delta: 0.01,
            min_p: 0.05,
            max_p: 0.95,
        }
    }
}

/// GRESO: probabilistic pre-rollout skipping with adaptive skip probabilities.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Greso {
    cfg: GresoConfig,
    p_easy: f32,
    p_hard: f32,
    /// Per prompt: +z = z consecutive all-correct groups, −z = z consecutive all-wrong, 0 = other.
    streak: Vec<i16>,
}

impl Greso {
    /// Builds GRESO; rejects probabilities outside [0, 1].
    pub fn new(cfg: GresoConfig) -> Result<Self> {
        let probs = [
            cfg.p_easy,
            cfg.p_hard,
            cfg.target_easy,
            cfg.target_hard,
            cfg.min_p,
            cfg.max_p,
        ];
        if probs.iter().any(|p| !(0.0..=1.0).contains(p))
            || cfg.min_p > cfg.max_p
            || cfg.delta < 0.0
        {
            return Err(SamplerError::InvalidConfig(format!(
                "greso: bad probabilities {cfg:?}"
            )));
        }
        Ok(Greso {
            p_easy: cfg.p_easy,
            p_hard: cfg.p_hard,
            cfg,
            streak: Vec::new(),
        })
    }

    /// Current adaptive keep bases (p_easy, p_hard).
    pub fn probabilities(&self) -> (f32, f32) {
        (self.p_easy, self.p_hard)
    }

    fn keep_prob(&self, id: u32) -> f32 {
        let z = self.streak.get(id as usize).copied().unwrap_or(0);
        match z {
            0 => 1.0,
            z if z > 0 => self.p_easy.powi(z as i32),
            z => self.p_hard.powi(-(z as i32)),
        }
    }
}

impl Acquisition for Greso {
    fn name(&self) -> &str {
        "greso"
    }
    fn needs(&self) -> Vec<Quantity> {
        Vec::new()
    }
    /// Visits candidates in random order (lazy Fisher–Yates), keeping each with its keep
    /// probability until B are kept; skipped ones fill the batch if the pool runs out.
    fn select(
        &mut self,
        c: &[u32],
        b: usize,
        _: &Scores,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<usize>> {
        let mut order: Vec<usize> = (0..c.len()).collect();
        let (mut kept, mut skipped) = (Vec::with_capacity(b), Vec::new());
        for i in 0..order.len() {
            if kept.len() == b {
                break;
            }
            let j = rng.random_range(i..order.len());
            order.swap(i, j);
            let p = order[i];
            if rng.random::<f32>() < self.keep_prob(c[p]) {
                kept.push(p);
            } else {
                skipped.push(p);
            }
        }
        let missing = b - kept.len();
        kept.extend(skipped.into_iter().take(missing));
        Ok(kept)
    }
    fn observe(&mut self, outcomes: &[Outcome]) -> Result<()> {
        validate_batch(outcomes)?;
        if outcomes.is_empty() {
            return Ok(());
        }
        let (mut easy, mut hard) = (0usize, 0usize);
        for o in outcomes {
            crate::predictor::ensure_len(&mut self.streak, o.id, 0)?;
            let z = &mut self.streak[o.id as usize];
            *z = if o.successes == o.rollouts {
                easy += 1;
                (*z).max(0).saturating_add(1)
            } else if o.successes == 0 {
                hard += 1;
                (*z).min(0).saturating_sub(1)
            } else {
                0
            };
        }
        let n = outcomes.len() as f32;
        let step = |p: f32, ratio: f32, target: f32| {
            let p = if ratio >= target {
                p - self.cfg.delta
            } else {
                p + self.cfg.delta
            };
            p.clamp(self.cfg.min_p, self.cfg.max_p)
        };
        self.p_easy = step(self.p_easy, easy as f32 / n, self.cfg.target_easy);
        self.p_hard = step(self.p_hard, hard as f32 / n, self.cfg.target_hard);
        Ok(())
    }
    fn save(&self) -> Result<serde_json::Value> {
        Ok(serde_json::to_value(self)?)
    }
    fn load(&mut self, state: serde_json::Value) -> Result<()> {
        *self = serde_json::from_value(state)
            .map_err(|e| SamplerError::InvalidState(format!("greso: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn hr_skips_last_all_correct() {
        let mut hr = HistoryReject::default();
        hr.observe(&[
            Outcome::new(0, 4, 4),
            Outcome::new(1, 2, 4),
            Outcome::new(2, 0, 4),
        ])
        .unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let ids = [0u32, 1, 2, 3];
        let mut got = hr.select(&ids, 3, &Scores::default(), &mut rng).unwrap();
        got.sort();
        assert_eq!(got, vec![1, 2, 3]);
        // Needs 4: the solved prompt fills the gap.
        assert_eq!(
            hr.select(&ids, 4, &Scores::default(), &mut rng)
                .unwrap()
                .len(),
            4
        );
        // Solved again? No: a partial result clears the flag.
        hr.observe(&[Outcome::new(0, 1, 4)]).unwrap();
        assert_eq!(hr.solved[0], 0);
    }

    #[test]
    fn greso_streaks_and_adaptation() {
        let mut g = Greso::new(GresoConfig::default()).unwrap();
        // 2 easy, 1 hard, 1 partial of 4: easy ratio 0.5 >= 1/12 → p_easy 0.49; hard 0.25 >= 1/6 → 0.49.
        let o = [
            Outcome::new(0, 4, 4),
            Outcome::new(1, 4, 4),
            Outcome::new(2, 0, 4),
            Outcome::new(3, 1, 4),
        ];
        g.observe(&o).unwrap();
        let (pe, ph) = g.probabilities();
        assert!((pe - 0.49).abs() < 1e-6 && (ph - 0.49).abs() < 1e-6);
        g.observe(&[Outcome::new(0, 4, 4), Outcome::new(3, 2, 4)])
            .unwrap();
        // prompt 0 has an easy streak of 2: keep prob 0.48^2; prompt 2 hard streak 1: 0.50 (hard ratio 0 < 1/6 → +0.01).
        assert_eq!(g.streak[..4], [2, 1, -1, 0]);
        assert!((g.keep_prob(0) - 0.48f32.powi(2)).abs() < 1e-6);
        assert!((g.keep_prob(2) - 0.50).abs() < 1e-6);
        assert_eq!(g.keep_prob(3), 1.0);
        assert_eq!(g.keep_prob(77), 1.0);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let sel = g
            .select(&[0, 1, 2, 3], 4, &Scores::default(), &mut rng)
            .unwrap();
        let mut s = sel.clone();
        s.sort();
        assert_eq!(s, vec![0, 1, 2, 3]);
        assert!(Greso::new(GresoConfig {
            p_easy: 2.0,
            ..Default::default()
        })
        .is_err());
    }
}
