//! Which prompts a step trains on, and their rollouts ([`select_and_roll`]). Without
//! `[sampler]`: the seeded uniform epoch order of [`ShuffledEpochs`]. With it: a per-step
//! candidate pool (uniform without replacement, seeded by `data.seed` and the step) from which
//! an [`augur_sampler::Sampler`] picks B before rollout and learns from the outcomes after; or
//! DAPO dynamic sampling (`method = "ds"`), which rolls out and filters. The sampler's state
//! goes into checkpoints as `sampler.json`.

use augur_sampler::{DynamicSampling, Method, Outcome, Sampler, SamplerState, StepTelemetry};
use serde::{Deserialize, Serialize};

use super::config::GrpoConfig;
use super::data::{ShuffledEpochs, SplitMix64};
use super::rollout::{Batch, Roller};
use crate::{Error, Result};

/// The prompt selection of a run.
pub enum PromptSource {
    /// Seeded epoch order (the default).
    Uniform(ShuffledEpochs),
    /// A predictive (or history-filtering) sampler over a candidate pool.
    Predictive { sampler: Box<Sampler>, ratio: usize },
    /// DAPO dynamic sampling: roll out, keep groups with 0 < s < k, repeat.
    Dynamic {
        ds: Box<DynamicSampling>,
        ratio: usize,
    },
}

/// What `sampler.json` holds (externally tagged: an internal tag would buffer the values, and
/// the RNG state holds a `u128` that serde's buffer cannot carry).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SourceState {
    Sampler(Box<SamplerState>),
    Ds(Box<DynamicSampling>),
}

impl PromptSource {
    /// Builds the source of `cfg`; `cursor` restores the uniform order.
    pub fn new(cfg: &GrpoConfig, n_prompts: usize, cursor: u64) -> Result<Self> {
        if n_prompts < cfg.rollout.prompts_per_step {
            return Err(Error::Config(format!(
                "rollout.prompts_per_step = {} is more than the {n_prompts} prompts of {}",
                cfg.rollout.prompts_per_step,
                cfg.data.train.display()
            )));
        }
        if let Some(h) = Holdout::of(cfg) {
            let open = (0..n_prompts as u32).filter(|&id| !h.contains(id)).count();
            if open < cfg.rollout.prompts_per_step {
                return Err(Error::Config(format!(
                    "sampler.holdout_fraction = {}: only {open} of the {n_prompts} prompts of {} \
                     stay candidates during the first {} steps, fewer than \
                     rollout.prompts_per_step = {}",
                    h.fraction,
                    cfg.data.train.display(),
                    h.steps,
                    cfg.rollout.prompts_per_step
                )));
            }
        }
        let Some(s) = &cfg.sampler else {
            return Ok(Self::Uniform(ShuffledEpochs::new(
                n_prompts,
                cfg.data.seed,
                cursor,
            )));
        };
        let mut sc = s.sampler.clone();
        sc.group_size = cfg.rollout.group_size as u32;
        let cerr = |e: augur_sampler::SamplerError| Error::Config(format!("sampler: {e}"));
        Ok(match sc.method {
            Method::Ds => Self::Dynamic {
                ds: Box::new(DynamicSampling::new(sc.ds.clone(), sc.seed).map_err(cerr)?),
                ratio: s.candidate_ratio,
            },
            _ => Self::Predictive {
                sampler: Box::new(sc.build().map_err(cerr)?),
                ratio: s.candidate_ratio,
            },
        })
    }

    /// The uniform order's cursor (0 for the samplers, whose pools are drawn per step).
    pub fn cursor(&self) -> u64 {
        match self {
            Self::Uniform(s) => s.cursor,
            _ => 0,
        }
    }

    /// The sampler's state as JSON, for `sampler.json` (`None` for the uniform order, whose
    /// state is the cursor in `trainer_state.json`).
    pub fn state_json(&self) -> Result<Option<Vec<u8>>> {
        let st = match self {
            Self::Uniform(_) => return Ok(None),
            Self::Predictive { sampler, .. } => SourceState::Sampler(Box::new(sampler.state()?)),
            Self::Dynamic { ds, .. } => SourceState::Ds(ds.clone()),
        };
        serde_json::to_vec(&st)
            .map(Some)
            .map_err(|e| Error::Checkpoint(format!("sampler state: {e}")))
    }

    /// Restores what [`PromptSource::state_json`] wrote.
    pub fn load_state_json(&mut self, bytes: &[u8]) -> Result<()> {
        let st: SourceState = serde_json::from_slice(bytes)
            .map_err(|e| Error::Checkpoint(format!("sampler.json: {e}")))?;
        match (self, st) {
            (Self::Predictive { sampler, .. }, SourceState::Sampler(st)) => {
                sampler.load_state(*st)?
            }
            (Self::Dynamic { ds, .. }, SourceState::Ds(st)) => *ds = st,
            _ => {
                return Err(Error::Checkpoint(
                    "sampler.json is for a different sampler method".into(),
                ))
            }
        }
        Ok(())
    }
}

/// `[sampler] holdout_fraction` / `holdout_steps`: prompts kept out of the candidates for the
/// first `steps` steps, so that every sampler meets them for the first time after it has learned
/// from the others (how well a predictor generalises to unseen prompts: GPS's embedding model
/// against a per-prompt prior). Each prompt is held out with chance `fraction`, decided by a hash
/// of `seed` (the run's `data.seed`) and its id, so the set needs no state, survives resumes and
/// can be recomputed from the config alone (as `augur ablate`'s report does).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Holdout {
    pub fraction: f64,
    /// Steps (counted from 0) before which held-out prompts are no candidates.
    pub steps: u64,
    pub seed: u64,
}

impl Holdout {
    /// The hold-out of `cfg`; `None` without one.
    pub fn of(cfg: &GrpoConfig) -> Option<Self> {
        let s = cfg.sampler.as_ref()?;
        (s.holdout_fraction > 0.0 && s.holdout_steps > 0).then_some(Self {
            fraction: s.holdout_fraction,
            steps: s.holdout_steps,
            seed: cfg.data.seed,
        })
    }

    /// Whether prompt `id` is one of the held-out prompts.
    pub fn contains(&self, id: u32) -> bool {
        let mut h = SplitMix64(self.seed ^ 0x5DEE_CE66_D1CE_5EED);
        h.0 ^= (id as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
        let unit = (h.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < self.fraction
    }

    /// Whether prompt `id` is kept out of the candidates at `step` (0-based, as the trainer
    /// counts before the step runs).
    pub fn hides(&self, id: u32, step: u64) -> bool {
        step < self.steps && self.contains(id)
    }
}

/// Candidate pool of a step: `ratio × b` distinct prompt ids drawn uniformly without
/// replacement (a partial Fisher–Yates shuffle seeded by `seed` and `step`) from the prompts
/// `holdout` does not hide at `step`; all of those when `ratio == 0` or the pool would cover
/// them. Without a hold-out (or after it) the pool is the same as it was before hold-outs existed.
pub fn candidate_pool(
    n: usize,
    ratio: usize,
    b: usize,
    seed: u64,
    step: u64,
    holdout: Option<&Holdout>,
) -> Vec<u32> {
    let want = ratio.saturating_mul(b);
    let mut all: Vec<u32> = (0..n as u32)
        .filter(|&id| !holdout.is_some_and(|h| h.hides(id, step)))
        .collect();
    let n = all.len();
    if ratio == 0 || want >= n {
        return all;
    }
    let mut rng = SplitMix64(seed ^ step.wrapping_add(1).wrapping_mul(0xA24B_AED4_963E_E407));
    for i in 0..want {
        let j = i + rng.below(n - i);
        all.swap(i, j);
    }
    all.truncate(want);
    all
}

/// The groups a step trains on, and what choosing them cost.
pub struct Selected {
    pub batch: Batch,
    /// Completions generated this step (DS: every round's).
    pub rollouts: u64,
    pub telemetry: Option<StepTelemetry>,
    pub ds_rounds: Option<u32>,
    /// The predictor's expected success rate of each trained prompt, in `batch.idx` order
    /// (predictive samplers only).
    pub predicted: Option<Vec<f32>>,
}

/// Chooses this step's prompts with `source`, rolls them out and scores them; a sampler then
/// observes the per-prompt outcomes (successes = completions judged correct, out of G).
pub fn select_and_roll(
    source: &mut PromptSource,
    roller: &Roller,
    cfg: &GrpoConfig,
    step: u64,
    seed: u64,
) -> Result<Selected> {
    let (b, g) = (cfg.rollout.prompts_per_step, cfg.rollout.group_size);
    let n = roller.prompts.len();
    let holdout = Holdout::of(cfg);
    match source {
        PromptSource::Uniform(order) => {
            let batch = roller.roll(&order.next_batch(b), seed)?;
            let rollouts = batch.samples.len() as u64;
            Ok(Selected {
                batch,
                rollouts,
                telemetry: None,
                ds_rounds: None,
                predicted: None,
            })
        }
        PromptSource::Predictive { sampler, ratio } => {
            let pool = candidate_pool(n, *ratio, b, cfg.data.seed, step, holdout.as_ref());
            let sel = sampler.select(&pool, b)?;
            let idx: Vec<usize> = sel.ids.iter().map(|&i| i as usize).collect();
            let batch = roller.roll(&idx, seed)?;
            let telemetry = sampler.observe(&batch.outcomes(g))?;
            let rollouts = batch.samples.len() as u64;
            Ok(Selected {
                batch,
                rollouts,
                telemetry: Some(telemetry),
                ds_rounds: None,
                predicted: Some(sel.predicted),
            })
        }
        PromptSource::Dynamic { ds, ratio } => {
            let pool = candidate_pool(n, *ratio, b, cfg.data.seed, step, holdout.as_ref());
            let mut rounds: Vec<Batch> = Vec::new();
            let res = ds.step(&pool, b, |ids: &[u32]| -> Result<Vec<Outcome>> {
                let idx: Vec<usize> = ids.iter().map(|&i| i as usize).collect();
                // Round 0 samples with the same seed as a uniform step; later rounds differ.
                let round_seed = seed.wrapping_add((rounds.len() as u64) << 32);
                let batch = roller.roll(&idx, round_seed)?;
                let outs = batch.outcomes(g);
                rounds.push(batch);
                Ok(outs)
            })?;
            let kept: Vec<u32> = res.kept.iter().map(|o| o.id).collect();
            let batch = Batch::from_ds_rounds(&rounds, &kept, b, g);
            let rollouts = rounds.iter().map(|r| r.samples.len() as u64).sum();
            Ok(Selected {
                batch,
                rollouts,
                telemetry: Some(res.telemetry),
                ds_rounds: Some(res.rounds),
                predicted: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_is_distinct_seeded_and_whole_when_ratio_zero() {
        let a = candidate_pool(100, 4, 5, 7, 3, None);
        assert_eq!(a.len(), 20);
        let mut s = a.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 20);
        assert_eq!(a, candidate_pool(100, 4, 5, 7, 3, None));
        assert_ne!(a, candidate_pool(100, 4, 5, 7, 4, None));
        assert_eq!(
            candidate_pool(10, 0, 5, 7, 3, None),
            (0..10).collect::<Vec<_>>()
        );
        assert_eq!(candidate_pool(10, 4, 5, 7, 3, None).len(), 10);
    }

    #[test]
    fn holdout_hides_a_seeded_part_for_its_steps_only() {
        let h = Holdout {
            fraction: 0.4,
            steps: 12,
            seed: 3,
        };
        let held: Vec<u32> = (0..1000).filter(|&id| h.contains(id)).collect();
        // 400 expected; a binomial standard deviation is 15.5.
        assert!((340..=460).contains(&held.len()), "{}", held.len());
        let other_seed = Holdout { seed: 4, ..h };
        let held4: Vec<u32> = (0..1000).filter(|&id| other_seed.contains(id)).collect();
        assert_ne!(held, held4);
        // Before step 12 no held-out prompt is a candidate, whatever the ratio; from step 12 on
        // the pool is exactly the one without a hold-out.
        for step in 0..12 {
            for ratio in [0, 4] {
                let pool = candidate_pool(1000, ratio, 8, 7, step, Some(&h));
                assert!(pool.iter().all(|id| !h.contains(*id)), "step {step}");
                let want = if ratio == 0 { 1000 - held.len() } else { 32 };
                assert_eq!(pool.len(), want);
            }
        }
        for step in [12, 13, 30] {
            assert_eq!(
                candidate_pool(1000, 4, 8, 7, step, Some(&h)),
                candidate_pool(1000, 4, 8, 7, step, None)
            );
        }
        let all = candidate_pool(1000, 0, 8, 7, 12, Some(&h));
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
    }
}
