//! Held-out evaluation during training: the `[eval]` prompts rolled out with the current policy
//! (adapters on) and scored by the run's verifier.

use std::time::Instant;

use augur_rollout::SamplingParams;

use super::config::{EvalSection, GrpoConfig};
use super::rollout::Roller;
use crate::metrics::EvalMetrics;
use crate::Result;

/// The evaluation's sampling parameters: `samples` per prompt at `temperature` (0 = greedy).
pub fn eval_params(cfg: &GrpoConfig, e: &EvalSection) -> SamplingParams {
    SamplingParams {
        n: e.samples,
        temperature: e.temperature,
        max_new_tokens: e.max_new_tokens.unwrap_or(cfg.rollout.max_new_tokens),
        stop_strings: cfg.rollout.stop_strings.clone(),
        ..Default::default()
    }
}

/// Scores every prompt of `roller` (the eval roller, whose prompts are the held-out set).
pub fn evaluate(roller: &Roller, seed: u64) -> Result<EvalMetrics> {
    let t0 = Instant::now();
    let idx: Vec<usize> = (0..roller.prompts.len()).collect();
    let batch = roller.roll(&idx, seed)?;
    let n = batch.scores.len().max(1) as f64;
    Ok(EvalMetrics {
        eval_accuracy: batch.scores.iter().filter(|s| s.correct).count() as f64 / n,
        eval_reward: batch.scores.iter().map(|s| s.reward as f64).sum::<f64>() / n,
        eval_prompts: idx.len(),
        time_eval_s: t0.elapsed().as_secs_f64(),
    })
}
