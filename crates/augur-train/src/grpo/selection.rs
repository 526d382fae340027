//! Which prompts a step trains on. Without `[sampler]`: the seeded uniform epoch order of
//! [`PromptSampler`]. With it: a per-step candidate pool (uniform without replacement, seeded by
//! `data.seed` and the step) from which an [`augur_sampler::Sampler`] picks B before rollout and
//! learns from the outcomes after; or DAPO dynamic sampling (`method = "ds"`), which rolls out
//! and filters. The sampler's state goes into checkpoints as `sampler.json`.

use augur_sampler::{DynamicSampling, Method, Outcome, Sampler, SamplerState, StepTelemetry};
use serde::{Deserialize, Serialize};

use super::config::GrpoConfig;
use super::data::{PromptSampler, SplitMix64};
use crate::{Error, Result};

/// The prompt selection of a run.
pub enum PromptSource {
    /// Seeded epoch order (the default).
    Uniform(PromptSampler),
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
        let Some(s) = &cfg.sampler else {
            return Ok(Self::Uniform(PromptSampler::new(
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

/// Candidate pool of a step: `ratio × b` distinct prompt ids drawn uniformly without
/// replacement (a partial Fisher–Yates shuffle seeded by `seed` and `step`); every prompt when
/// `ratio == 0` or the pool would cover the dataset.
pub fn candidate_pool(n: usize, ratio: usize, b: usize, seed: u64, step: u64) -> Vec<u32> {
    let want = ratio.saturating_mul(b);
    let mut all: Vec<u32> = (0..n as u32).collect();
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

/// The sampler metrics of a step, as JSON fields.
pub fn telemetry_json(t: &StepTelemetry) -> serde_json::Value {
    serde_json::json!({
        "sampler_effective_ratio": t.effective_ratio,
        "sampler_spearman": t.spearman,
        "sampler_brier": t.brier,
        "sampler_select_us": t.select_us,
        "sampler_update_us": t.update_us,
    })
}

/// Fraction of `outcomes` with 0 < s < k.
pub fn effective_ratio(outcomes: &[Outcome]) -> f64 {
    let n = outcomes.len().max(1) as f64;
    outcomes.iter().filter(|o| o.is_effective()).count() as f64 / n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_is_distinct_seeded_and_whole_when_ratio_zero() {
        let a = candidate_pool(100, 4, 5, 7, 3);
        assert_eq!(a.len(), 20);
        let mut s = a.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 20);
        assert_eq!(a, candidate_pool(100, 4, 5, 7, 3));
        assert_ne!(a, candidate_pool(100, 4, 5, 7, 4));
        assert_eq!(candidate_pool(10, 0, 5, 7, 3), (0..10).collect::<Vec<_>>());
        assert_eq!(candidate_pool(10, 4, 5, 7, 3).len(), 10);
    }
}
