//! One simulated training run: a sampler (or DS, or the oracle) driving the simulated learner.

use super::learner::{SimConfig, SimLearner};
use crate::acquisition::TopPartial;
use crate::config::{Method, SamplerConfig};
use crate::ds::DynamicSampling;
use crate::error::{Result, SamplerError};
use crate::outcome::Outcome;
use crate::predictor::{check_len, PredictCtx, Predictor, Quantity};
use crate::sampler::Sampler;
use rand::seq::index;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// What a run is driven by.
#[derive(Debug, Clone, PartialEq)]
pub enum RunSpec {
    /// A select/observe sampler or DS, from its config.
    Sampler(Box<SamplerConfig>),
    /// Knows the true success rates, picks top P(partial): the upper bound.
    Oracle,
}

impl RunSpec {
    /// Spec of a method name (`uniform`, `ds`, `hr`, `greso`, `mopps`, `dps`, `gps`, `oracle`) with defaults.
    pub fn from_name(name: &str) -> Result<Self> {
        if name.eq_ignore_ascii_case("oracle") {
            return Ok(RunSpec::Oracle);
        }
        let m: Method = name.parse()?;
        Ok(RunSpec::Sampler(Box::new(SamplerConfig::for_method(m))))
    }
}

/// One step's record of a simulated run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// 1-based step.
    pub step: usize,
    /// Rollouts spent so far (DS: every round).
    pub rollouts_cumulative: u64,
    /// Expected accuracy of the simulated policy after this step.
    pub accuracy: f64,
    /// Fraction of rolled-out groups with 0 < s < k.
    pub effective_ratio: f64,
    /// Spearman ρ of predicted vs observed success rate of the selected prompts.
    pub spearman: Option<f64>,
    /// Brier score of the same.
    pub brier: Option<f64>,
    /// Predictor update time, µs.
    pub update_us: u64,
    /// Selection time, µs.
    pub select_us: u64,
    /// Wall time of the whole step (selection, rollout, training, update), seconds.
    pub time_step_s: f64,
}

/// A finished run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// Method name as requested.
    pub method: String,
    /// Seed of the run.
    pub seed: u64,
    /// Accuracy before training.
    pub initial_accuracy: f64,
    /// Per-step records.
    pub steps: Vec<StepRecord>,
    /// Wall time of the whole run, seconds.
    pub wall_s: f64,
}

impl RunResult {
    /// Accuracy after the last step.
    pub fn final_accuracy(&self) -> f64 {
        self.steps
            .last()
            .map_or(self.initial_accuracy, |s| s.accuracy)
    }

    /// Total rollouts spent.
    pub fn total_rollouts(&self) -> u64 {
        self.steps.last().map_or(0, |s| s.rollouts_cumulative)
    }

    /// Rollouts spent when accuracy first reached `target`, if it did.
    pub fn rollouts_to(&self, target: f64) -> Option<u64> {
        self.steps
            .iter()
            .find(|s| s.accuracy >= target)
            .map(|s| s.rollouts_cumulative)
    }

    /// Mean of a per-step value after `warmup` steps, skipping undefined steps.
    pub fn mean_after(&self, warmup: usize, f: impl Fn(&StepRecord) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.steps.iter().skip(warmup).filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }
}

/// The oracle's predictor: reads the learner's true success probabilities.
pub struct OraclePredictor {
    truth: Arc<RwLock<Vec<f32>>>,
}

impl OraclePredictor {
    /// Shares `truth`, which the runner refreshes before every selection.
    pub fn new(truth: Arc<RwLock<Vec<f32>>>) -> Self {
        OraclePredictor { truth }
    }
}

impl Predictor for OraclePredictor {
    fn name(&self) -> &str {
        "oracle"
    }
    fn predict(&self, ids: &[u32], q: Quantity, ctx: PredictCtx, out: &mut [f32]) -> Result<()> {
        check_len(ids, out)?;
        let t = self
            .truth
            .read()
            .map_err(|_| SamplerError::InvalidState("oracle truth lock poisoned".into()))?;
        for (o, &id) in out.iter_mut().zip(ids) {
            let p = *t.get(id as usize).ok_or_else(|| {
                SamplerError::InvalidArgument(format!("oracle: unknown prompt {id}"))
            })?;
            *o = match q {
                Quantity::Mean | Quantity::Sample => p,
                Quantity::Std => 0.0,
                Quantity::Partial => 1.0 - p.powi(ctx.k as i32) - (1.0 - p).powi(ctx.k as i32),
            };
        }
        Ok(())
    }
    fn observe(&mut self, _: &[Outcome]) -> Result<()> {
        Ok(())
    }
    fn save(&self) -> Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }
    fn load(&mut self, _: serde_json::Value) -> Result<()> {
        Ok(())
    }
}

fn record(
    step: usize,
    learner: &SimLearner,
    t: &crate::telemetry::StepTelemetry,
    started: Instant,
) -> StepRecord {
    StepRecord {
        step,
        rollouts_cumulative: t.rollouts_cumulative,
        accuracy: learner.accuracy(),
        effective_ratio: t.effective_ratio,
        spearman: t.spearman,
        brier: t.brier,
        update_us: t.update_us,
        select_us: t.select_us,
        time_step_s: started.elapsed().as_secs_f64(),
    }
}

/// Runs `spec` for `sim.steps` steps on the learner drawn from `seed`.
pub fn run_simulation(
    sim: &SimConfig,
    method: &str,
    spec: &RunSpec,
    seed: u64,
) -> Result<RunResult> {
    let t0 = Instant::now();
    let mut learner = SimLearner::new(sim, seed)?;
    let initial_accuracy = learner.accuracy();
    let n = learner.len();
    let (b, pool) = (sim.batch_size, sim.pool_size());
    let mut pool_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9001);
    let mut steps = Vec::with_capacity(sim.steps);
    let all: Vec<u32> = (0..n as u32).collect();

    if let RunSpec::Sampler(cfg) = spec {
        if cfg.method == Method::Ds && cfg.predictor.is_none() && cfg.acquisition.is_none() {
            let mut ds = DynamicSampling::new(cfg.ds.clone(), seed)?;
            for step in 1..=sim.steps {
                let started = Instant::now();
                let r = ds.step(&all, b, |ids| learner.rollout(ids))?;
                learner.train(&r.kept);
                steps.push(record(step, &learner, &r.telemetry, started));
            }
            return Ok(RunResult {
                method: method.into(),
                seed,
                initial_accuracy,
                steps,
                wall_s: t0.elapsed().as_secs_f64(),
            });
        }
    }
    let truth = Arc::new(RwLock::new(Vec::new()));
    let mut sampler = match spec {
        RunSpec::Oracle => Sampler::new(
            Box::new(OraclePredictor::new(truth.clone())),
            Box::new(TopPartial),
            seed,
            sim.group_size,
        ),
        RunSpec::Sampler(cfg) => {
            let mut cfg = (**cfg).clone();
            cfg.seed = seed;
            cfg.group_size = sim.group_size;
            if cfg.method == Method::Ds {
                cfg.method = Method::Uniform;
            }
            cfg.build()?
        }
    };
    if sampler.uses_embeddings() {
        let e = learner.embeddings(sim.embedding_dim, sim.embedding_noise, seed);
        sampler.set_embeddings(&all, &e)?;
    }
    for step in 1..=sim.steps {
        let started = Instant::now();
        if matches!(spec, RunSpec::Oracle) {
            *truth
                .write()
                .map_err(|_| SamplerError::InvalidState("oracle truth lock poisoned".into()))? =
                learner.success_probs();
        }
        let cands: Vec<u32> = if pool >= n {
            all.clone()
        } else {
            index::sample(&mut pool_rng, n, pool)
                .into_iter()
                .map(|i| i as u32)
                .collect()
        };
        let sel = sampler.select(&cands, b)?;
        let outs = learner.rollout(&sel.ids)?;
        learner.train(&outs);
        let t = sampler.observe(&outs)?;
        steps.push(record(step, &learner, &t, started));
    }
    Ok(RunResult {
        method: method.into(),
        seed,
        initial_accuracy,
        steps,
        wall_s: t0.elapsed().as_secs_f64(),
    })
}
