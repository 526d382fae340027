//! DS — DAPO dynamic sampling, the evaluate-then-filter baseline: roll out a generation batch,
//! keep groups whose rewards vary (0 < s < k), repeat until B groups are kept or `max_rounds`
//! rounds are spent, then truncate to B. Every rollout it spends is counted.

use crate::error::{Result, SamplerError};
use crate::outcome::{validate_batch, validate_candidates, Outcome};
use crate::telemetry::StepTelemetry;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// DS settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DsConfig {
    /// Maximum generation rounds per step (DAPO `max_num_gen_batches`; default 10).
    pub max_rounds: u32,
    /// Prompts rolled out per round; `None` = B.
    pub gen_batch: Option<usize>,
}

impl Default for DsConfig {
    fn default() -> Self {
        DsConfig {
            max_rounds: 10,
            gen_batch: None,
        }
    }
}

/// Result of one DS step.
#[derive(Debug, Clone)]
pub struct DsStep {
    /// Groups kept for training (at most B, all with 0 < s < k).
    pub kept: Vec<Outcome>,
    /// Every group rolled out this step, kept or not.
    pub rolled: Vec<Outcome>,
    /// Rounds used.
    pub rounds: u32,
    /// Step telemetry (rollouts include every round).
    pub telemetry: StepTelemetry,
}

/// The DS driver; state is serialisable for exact resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DynamicSampling {
    cfg: DsConfig,
    rng: ChaCha8Rng,
    step: u64,
    rollouts_cumulative: u64,
}

impl DynamicSampling {
    /// Builds the driver; `max_rounds` must be at least 1.
    pub fn new(cfg: DsConfig, seed: u64) -> Result<Self> {
        if cfg.max_rounds == 0 || cfg.gen_batch == Some(0) {
            return Err(SamplerError::InvalidConfig(format!(
                "ds: bad config {cfg:?}"
            )));
        }
        Ok(DynamicSampling {
            cfg,
            rng: ChaCha8Rng::seed_from_u64(seed),
            step: 0,
            rollouts_cumulative: 0,
        })
    }

    /// Runs one step. `rollout(ids)` must return one outcome per id (any order); prompts are
    /// drawn uniformly without replacement from `candidates` across the step's rounds. The
    /// callback's own error type `E` is returned as it is (a trainer's rollout failure stays
    /// its own error), and this driver's errors are converted into it.
    pub fn step<F, E>(
        &mut self,
        candidates: &[u32],
        b: usize,
        mut rollout: F,
    ) -> std::result::Result<DsStep, E>
    where
        F: FnMut(&[u32]) -> std::result::Result<Vec<Outcome>, E>,
        E: From<SamplerError>,
    {
        validate_candidates(candidates, b)?;
        let gen = self.cfg.gen_batch.unwrap_or(b);
        let mut pool: Vec<u32> = candidates.to_vec();
        let mut drawn = 0usize;
        let (mut kept, mut rolled) = (Vec::with_capacity(b), Vec::new());
        let mut rounds = 0;
        let mut select_us = 0;
        while kept.len() < b && rounds < self.cfg.max_rounds && drawn < pool.len() {
            let t = Instant::now();
            let end = (drawn + gen).min(pool.len());
            for i in drawn..end {
                let j = self.rng.random_range(i..pool.len());
                pool.swap(i, j);
            }
            select_us += t.elapsed().as_micros() as u64;
            let ids = &pool[drawn..end];
            drawn = end;
            rounds += 1;
            let outs = rollout(ids)?;
            validate_batch(&outs)?;
            if outs.len() != ids.len() {
                return Err(SamplerError::InvalidArgument(format!(
                    "ds rollout returned {} outcomes for {} prompts",
                    outs.len(),
                    ids.len()
                ))
                .into());
            }
            kept.extend(outs.iter().filter(|o| o.is_effective()).copied());
            rolled.extend(outs);
        }
        kept.truncate(b);
        let rollouts: u64 = rolled.iter().map(|o| o.rollouts as u64).sum();
        self.rollouts_cumulative += rollouts;
        self.step += 1;
        let eff = rolled.iter().filter(|o| o.is_effective()).count();
        let telemetry = StepTelemetry {
            step: self.step,
            rollouts,
            rollouts_cumulative: self.rollouts_cumulative,
            effective_ratio: if rolled.is_empty() {
                0.0
            } else {
                eff as f64 / rolled.len() as f64
            },
            spearman: None,
            brier: None,
            update_us: 0,
            select_us,
        };
        Ok(DsStep {
            kept,
            rolled,
            rounds,
            telemetry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_effective_groups_and_counts_all_rollouts() {
        let mut ds = DynamicSampling::new(DsConfig::default(), 0).unwrap();
        let cands: Vec<u32> = (0..100).collect();
        // Even ids are partial, odd ids all-wrong: each round of 10 keeps ~5.
        let r = ds
            .step(&cands, 10, |ids| {
                Ok::<_, SamplerError>(
                    ids.iter()
                        .map(|&i| Outcome::new(i, (i % 2 == 0) as u32, 4))
                        .collect(),
                )
            })
            .unwrap();
        assert_eq!(r.kept.len(), 10);
        assert!(r.kept.iter().all(|o| o.id % 2 == 0));
        assert!(r.rounds >= 2);
        assert_eq!(r.telemetry.rollouts, 4 * r.rolled.len() as u64);
        // Nothing effective: stops after max_rounds with nothing kept.
        let mut ds = DynamicSampling::new(
            DsConfig {
                max_rounds: 3,
                gen_batch: None,
            },
            0,
        )
        .unwrap();
        let r = ds
            .step(&cands, 10, |ids| {
                Ok::<_, SamplerError>(ids.iter().map(|&i| Outcome::new(i, 0, 4)).collect())
            })
            .unwrap();
        assert_eq!((r.kept.len(), r.rounds, r.rolled.len()), (0, 3, 30));
        // A callback returning the wrong count is an error, not a panic.
        assert!(ds
            .step(&cands, 10, |_| Ok::<_, SamplerError>(vec![]))
            .is_err());
    }

    /// The callback's failure comes back as itself, not as a sampler error standing in for it.
    #[test]
    fn a_rollout_failure_is_returned_unchanged() {
        #[derive(Debug, PartialEq)]
        enum Failure {
            Rollout(Vec<u32>),
            Sampler(String),
        }
        impl From<SamplerError> for Failure {
            fn from(e: SamplerError) -> Self {
                Failure::Sampler(e.to_string())
            }
        }
        let mut ds = DynamicSampling::new(DsConfig::default(), 0).unwrap();
        let cands: Vec<u32> = (0..4).collect();
        let err = ds
            .step(&cands, 2, |ids| Err(Failure::Rollout(ids.to_vec())))
            .unwrap_err();
        assert!(
            matches!(&err, Failure::Rollout(ids) if ids.len() == 2),
            "{err:?}"
        );
        // The driver's own errors arrive through `From`.
        let err = ds.step(&cands, 9, |_| Ok(vec![])).unwrap_err();
        assert!(matches!(err, Failure::Sampler(_)), "{err:?}");
    }
}
