//! The sampler: a predictor paired with an acquisition rule, the two hooks the training loop
//! calls (`select` before rollout, `observe` after rewards), telemetry, and exact-resume state.

use crate::acquisition::{Acquisition, Scores};
use crate::error::{Result, SamplerError};
use crate::outcome::{validate_batch, validate_candidates, Outcome};
use crate::predictor::{PredictCtx, Predictor, Quantity};
use crate::telemetry::{brier, spearman, StepTelemetry};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Instant;

/// Version of [`SamplerState`]; bumped when the layout changes.
pub const STATE_VERSION: u32 = 1;

/// The prompts chosen for the next step, with the predictor's expected success rate of each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// Chosen prompt ids, in the acquisition's preference order.
    pub ids: Vec<u32>,
    /// Predicted success rate E[p] of each chosen prompt (same order as `ids`).
    pub predicted: Vec<f32>,
}

/// Per-prompt predictions for logging and plots ([`Sampler::estimate`]): no randomness, and
/// the sampler's RNG is not touched, so asking never changes later selections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimates {
    /// Expected success rate E[p] per id.
    pub mean: Vec<f32>,
    /// Standard deviation of the belief about p per id (epistemic uncertainty).
    pub std: Vec<f32>,
    /// Probability that a group of k rollouts is partially solved, P(0 < s < k), per id.
    pub partial: Vec<f32>,
}

/// Everything needed to resume a sampler exactly: its RNG, counters and both parts' state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplerState {
    /// Layout version ([`STATE_VERSION`]).
    pub version: u32,
    /// Predictor name, checked on load.
    pub predictor_name: String,
    /// Acquisition name, checked on load.
    pub acquisition_name: String,
    /// Completed `observe` calls.
    pub step: u64,
    /// Group size k used for P(partial) predictions.
    pub group_size: u32,
    /// Rollouts observed so far.
    pub rollouts_cumulative: u64,
    /// Sampler RNG (ChaCha8, position included).
    pub rng: ChaCha8Rng,
    /// Selected prompts not yet observed or released (in flight), with their predictions.
    pub pending: Vec<(u32, f32)>,
    /// Predictor state ([`Predictor::save`]).
    pub predictor: serde_json::Value,
    /// Acquisition state ([`Acquisition::save`]).
    pub acquisition: serde_json::Value,
}

/// A predictor + acquisition pair with the `select` / `observe` hooks.
pub struct Sampler {
    predictor: Box<dyn Predictor>,
    acquisition: Box<dyn Acquisition>,
    rng: ChaCha8Rng,
    step: u64,
    group_size: u32,
    rollouts_cumulative: u64,
    pending: Vec<(u32, f32)>,
    last_select_us: u64,
    /// Per-candidate score buffers, kept between selects: at 10^6 prompts a fresh 4 MB buffer
    /// per select cost more in page faults than filling it.
    scratch: Scores,
}

impl Sampler {
    /// Pairs any predictor with any acquisition rule. `group_size` is the k used for
    /// P(partial) until the first outcome reports the real one.
    pub fn new(
        predictor: Box<dyn Predictor>,
        acquisition: Box<dyn Acquisition>,
        seed: u64,
        group_size: u32,
    ) -> Self {
        Sampler {
            predictor,
            acquisition,
            rng: ChaCha8Rng::seed_from_u64(seed),
            step: 0,
            group_size: group_size.max(1),
            rollouts_cumulative: 0,
            pending: Vec::new(),
            last_select_us: 0,
            scratch: Scores::default(),
        }
    }

    /// Name "predictor+acquisition", e.g. `beta+target`.
    pub fn name(&self) -> String {
        format!("{}+{}", self.predictor.name(), self.acquisition.name())
    }

    /// Completed steps (number of `observe` calls).
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The predictor, for callers that want raw predictions (e.g. evaluation, telemetry).
    pub fn predictor(&self) -> &dyn Predictor {
        self.predictor.as_ref()
    }

    /// Whether the predictor or the acquisition rule reads prompt embeddings (GPS).
    pub fn uses_embeddings(&self) -> bool {
        self.predictor.embeddings().is_some() || self.acquisition.embeddings().is_some()
    }

    /// Registers prompt embeddings (row-major, `ids.len() × dim`) with every part that uses
    /// them; see [`crate::embedding`] for how augur computes them. Not saved in the state:
    /// register them again after [`Sampler::load_state`]. Errors if nothing uses embeddings
    /// or the dimension disagrees with earlier registrations or the config.
    pub fn set_embeddings(&mut self, ids: &[u32], data: &[f32]) -> Result<()> {
        let mut tables: Vec<crate::embedding::SharedEmbeddings> = Vec::new();
        for t in [self.predictor.embeddings(), self.acquisition.embeddings()]
            .into_iter()
            .flatten()
        {
            if !tables.iter().any(|x| std::sync::Arc::ptr_eq(x, &t)) {
                tables.push(t);
            }
        }
        if tables.is_empty() {
            return Err(SamplerError::InvalidArgument(format!(
                "sampler {} does not use prompt embeddings",
                self.name()
            )));
        }
        for t in tables {
            crate::embedding::write(&t)?.set(ids, data)?;
        }
        Ok(())
    }

    /// Predicts quantity `q` for `ids` with fresh randomness from the sampler's RNG.
    pub fn predict(&mut self, ids: &[u32], q: Quantity) -> Result<Vec<f32>> {
        let ctx = PredictCtx {
            k: self.group_size,
            seed: self.rng.next_u64(),
        };
        let mut out = vec![0.0; ids.len()];
        self.predictor.predict(ids, q, ctx, &mut out)?;
        Ok(out)
    }

    /// E[p], its std and P(0 < s < k) (for the current group size) of `ids`, without drawing
    /// from the sampler's RNG.
    pub fn estimate(&self, ids: &[u32]) -> Result<Estimates> {
        let ctx = PredictCtx {
            k: self.group_size,
            seed: 0,
        };
        let one = |q| -> Result<Vec<f32>> {
            let mut out = vec![0.0; ids.len()];
            self.predictor.predict(ids, q, ctx, &mut out)?;
            Ok(out)
        };
        Ok(Estimates {
            mean: one(Quantity::Mean)?,
            std: one(Quantity::Std)?,
            partial: one(Quantity::Partial)?,
        })
    }

    /// Prompts selected but not yet observed or released (in flight), in selection order.
    pub fn in_flight(&self) -> impl Iterator<Item = u32> + '_ {
        self.pending.iter().map(|&(id, _)| id)
    }

    /// Drops `ids` from the in-flight set without an outcome (e.g. their generation failed);
    /// ids that are not in flight are ignored. Returns how many were in flight.
    pub fn release(&mut self, ids: &[u32]) -> usize {
        let drop: std::collections::HashSet<u32> = ids.iter().copied().collect();
        let before = self.pending.len();
        self.pending.retain(|(id, _)| !drop.contains(id));
        before - self.pending.len()
    }

    /// Chooses `b` of `candidates` (distinct prompt ids; the pool may be the whole dataset).
    /// Cost is O(len(candidates)), parallel over chunks. The chosen prompts are in flight
    /// until [`Sampler::observe`] reports them (or [`Sampler::release`] drops them); a later
    /// select does not exclude them by itself (the protocol server does).
    pub fn select(&mut self, candidates: &[u32], b: usize) -> Result<Selection> {
        let t0 = Instant::now();
        validate_candidates(candidates, b)?;
        let seed = self.rng.next_u64();
        let mut scores = std::mem::take(&mut self.scratch);
        let pos = self.score_and_pick(candidates, b, seed, &mut scores);
        self.scratch = scores;
        let pos = pos?;
        let ids: Vec<u32> = pos
            .iter()
            .map(|&p| candidates.get(p).copied())
            .collect::<Option<_>>()
            .ok_or_else(|| {
                SamplerError::InvalidState("acquisition returned a bad position".into())
            })?;
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if ids.len() != b || sorted.len() != b {
            return Err(SamplerError::InvalidArgument(format!(
                "selected {} distinct of {} requested: candidates must be distinct ids",
                sorted.len(),
                b
            )));
        }
        let mut predicted = vec![0.0; b];
        let ctx = PredictCtx {
            k: self.group_size,
            seed,
        };
        self.predictor
            .predict(&ids, Quantity::Mean, ctx, &mut predicted)?;
        let chosen: std::collections::HashSet<u32> = ids.iter().copied().collect();
        self.pending.retain(|(id, _)| !chosen.contains(id));
        self.pending
            .extend(ids.iter().copied().zip(predicted.iter().copied()));
        self.last_select_us = t0.elapsed().as_micros() as u64;
        Ok(Selection { ids, predicted })
    }

    /// Fills the quantities the acquisition needs for `candidates` into `scores` (resized in
    /// place, so its memory is reused) and lets the acquisition pick `b` positions.
    fn score_and_pick(
        &mut self,
        candidates: &[u32],
        b: usize,
        seed: u64,
        scores: &mut Scores,
    ) -> Result<Vec<usize>> {
        for (i, q) in self.acquisition.needs().into_iter().enumerate() {
            let ctx = PredictCtx {
                k: self.group_size,
                seed: seed.wrapping_add(i as u64),
            };
            let slot = scores.slot(q);
            slot.resize(candidates.len(), 0.0);
            self.predictor.predict(candidates, q, ctx, slot)?;
        }
        self.acquisition
            .select(candidates, b, scores, &mut self.rng)
    }

    /// Feeds back one step's outcomes (one per rolled-out prompt) and returns the step's
    /// telemetry: call it once per optimizer step with every group of that step. Outcomes for
    /// prompts that were not selected are allowed (they update the predictor but are not
    /// scored for ρ / Brier). Observed prompts leave the in-flight set; others stay in it.
    pub fn observe(&mut self, outcomes: &[Outcome]) -> Result<StepTelemetry> {
        validate_batch(outcomes)?;
        let t0 = Instant::now();
        self.predictor.observe(outcomes)?;
        self.acquisition.observe(outcomes)?;
        let update_us = t0.elapsed().as_micros() as u64;
        let rollouts: u64 = outcomes.iter().map(|o| o.rollouts as u64).sum();
        self.rollouts_cumulative += rollouts;
        if let Some(o) = outcomes.last() {
            self.group_size = o.rollouts;
        }
        self.step += 1;
        let pending: HashMap<u32, f32> = self.pending.iter().copied().collect();
        let (mut pred, mut obs) = (Vec::new(), Vec::new());
        for o in outcomes {
            if let Some(&p) = pending.get(&o.id) {
                pred.push(p as f64);
                obs.push(o.rate() as f64);
            }
        }
        let observed: std::collections::HashSet<u32> = outcomes.iter().map(|o| o.id).collect();
        self.pending.retain(|(id, _)| !observed.contains(id));
        let eff = outcomes.iter().filter(|o| o.is_effective()).count();
        Ok(StepTelemetry {
            step: self.step,
            rollouts,
            rollouts_cumulative: self.rollouts_cumulative,
            effective_ratio: if outcomes.is_empty() {
                0.0
            } else {
                eff as f64 / outcomes.len() as f64
            },
            spearman: spearman(&pred, &obs),
            brier: brier(&pred, &obs),
            update_us,
            select_us: self.last_select_us,
        })
    }

    /// Snapshot for a checkpoint; [`Sampler::load_state`] of it resumes bit-exactly.
    pub fn state(&self) -> Result<SamplerState> {
        Ok(SamplerState {
            version: STATE_VERSION,
            predictor_name: self.predictor.name().to_string(),
            acquisition_name: self.acquisition.name().to_string(),
            step: self.step,
            group_size: self.group_size,
            rollouts_cumulative: self.rollouts_cumulative,
            rng: self.rng.clone(),
            pending: self.pending.clone(),
            predictor: self.predictor.save()?,
            acquisition: self.acquisition.save()?,
        })
    }

    /// Restores a snapshot taken from a sampler of the same predictor and acquisition types.
    pub fn load_state(&mut self, st: SamplerState) -> Result<()> {
        if st.version != STATE_VERSION {
            return Err(SamplerError::InvalidState(format!(
                "state version {} (expected {STATE_VERSION})",
                st.version
            )));
        }
        if st.predictor_name != self.predictor.name()
            || st.acquisition_name != self.acquisition.name()
        {
            return Err(SamplerError::InvalidState(format!(
                "state is for {}+{}, sampler is {}",
                st.predictor_name,
                st.acquisition_name,
                self.name()
            )));
        }
        self.predictor.load(st.predictor)?;
        self.acquisition.load(st.acquisition)?;
        self.rng = st.rng;
        self.step = st.step;
        self.group_size = st.group_size.max(1);
        self.rollouts_cumulative = st.rollouts_cumulative;
        self.pending = st.pending;
        Ok(())
    }

    /// Writes the state as JSON to `path` (via a temporary file, so a crash never leaves half a file).
    pub fn save_to_file(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let path = path.as_ref();
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec(&self.state()?)?;
        std::fs::write(&tmp, bytes).map_err(|e| SamplerError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| SamplerError::io(path, e))
    }

    /// Loads state written by [`Sampler::save_to_file`].
    pub fn load_from_file(&mut self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| SamplerError::io(path, e))?;
        let st: SamplerState = serde_json::from_slice(&bytes)
            .map_err(|e| SamplerError::InvalidState(format!("{}: {e}", path.display())))?;
        self.load_state(st)
    }
}
