//! Predictors: from the history of outcomes, a predicted success-rate distribution per prompt.
//!
//! A predictor only answers "what do you expect of prompt i?" in a few summary forms
//! ([`Quantity`]); how to pick a batch from those answers is the job of an
//! [`crate::acquisition::Acquisition`], so any predictor pairs with any rule.
//! Unseen prompts get the predictor's prior, except for GPS ([`GpsPredictor`]), a small neural
//! network over prompt embeddings that generalises to prompts it has never seen.

mod beta;
mod dps;
mod gps;

pub use beta::{BetaConfig, BetaPredictor};
pub use dps::{DpsConfig, DpsPredictor};
pub use gps::{DiversityMode, GpsConfig, GpsPredictor, CONTEXT_DIM};

use crate::error::{Result, SamplerError};
use crate::outcome::Outcome;
pub(crate) use crate::prompt_table::ensure_len;
use serde::{Deserialize, Serialize};

/// A summary of the predicted success-rate distribution of one prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    /// Expected success rate E[p].
    Mean,
    /// Standard deviation of the belief about p (epistemic uncertainty).
    Std,
    /// One posterior draw of p (Thompson sampling); fresh randomness every call.
    Sample,
    /// Probability that a group of k rollouts is partially solved, P(0 < s < k).
    Partial,
}

/// Per-call context: group size for [`Quantity::Partial`], and the seed for [`Quantity::Sample`].
#[derive(Debug, Clone, Copy)]
pub struct PredictCtx {
    /// Rollouts per prompt (k) the prediction is for.
    pub k: u32,
    /// Seed of this call's randomness; chunk `c` uses stream `c` of it.
    pub seed: u64,
}

/// Predicts per-prompt success rates and learns from observed outcomes.
pub trait Predictor: Send + Sync {
    /// Short name used in state files and telemetry (`"beta"`, `"dps"`, `"none"`).
    fn name(&self) -> &str;
    /// Writes quantity `q` of every prompt in `ids` to `out` (same length). Must be O(len) and
    /// deterministic given `ctx.seed`; implementations parallelise over [`crate::random::CHUNK`]s.
    fn predict(&self, ids: &[u32], q: Quantity, ctx: PredictCtx, out: &mut [f32]) -> Result<()>;
    /// Updates beliefs after one training step with that step's outcomes (one per rolled-out prompt).
    fn observe(&mut self, outcomes: &[Outcome]) -> Result<()>;
    /// Serialisable state, for checkpoints; `load(save())` must resume bit-exactly.
    fn save(&self) -> Result<serde_json::Value>;
    /// Restores state produced by [`Predictor::save`] of the same predictor type.
    fn load(&mut self, state: serde_json::Value) -> Result<()>;
    /// The embedding table this predictor reads, if it uses prompt embeddings (GPS).
    fn embeddings(&self) -> Option<crate::embedding::SharedEmbeddings> {
        None
    }
}

/// Checks that an output buffer matches the id list, so predictors can index both blindly.
pub(crate) fn check_len(ids: &[u32], out: &[f32]) -> Result<()> {
    if ids.len() != out.len() {
        return Err(SamplerError::InvalidArgument(format!(
            "predict: {} ids but output buffer of {}",
            ids.len(),
            out.len()
        )));
    }
    Ok(())
}

/// The "none" predictor: knows nothing, predicts p = 0.5 for every prompt. Pairs with the
/// uniform and history-filter acquisitions, which do not use predictions.
#[derive(Debug, Clone, Default)]
pub struct NonePredictor;

impl Predictor for NonePredictor {
    fn name(&self) -> &str {
        "none"
    }

    fn predict(&self, ids: &[u32], q: Quantity, ctx: PredictCtx, out: &mut [f32]) -> Result<()> {
        check_len(ids, out)?;
        match q {
            Quantity::Mean => out.fill(0.5),
            Quantity::Std => out.fill(0.0),
            Quantity::Partial => out.fill(1.0 - 2.0 * 0.5f32.powi(ctx.k as i32)),
            Quantity::Sample => {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = crate::random::hash_unit(ctx.seed, i as u64);
                }
            }
        }
        Ok(())
    }

    fn observe(&mut self, outcomes: &[Outcome]) -> Result<()> {
        crate::outcome::validate_batch(outcomes)
    }

    fn save(&self) -> Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }

    fn load(&mut self, _state: serde_json::Value) -> Result<()> {
        Ok(())
    }
}
