//! Acquisition rules: pick B prompts from a candidate pool given the predictor's answers.
//!
//! A rule declares which [`Quantity`]s it needs; the [`crate::Sampler`] asks the predictor for
//! exactly those, so any predictor pairs with any rule. Rules with memory of their own
//! (history filters HR and GRESO) learn through [`Acquisition::observe`].

mod diverse;
mod history;
mod rules;

pub use diverse::DiverseGreedy;
pub use history::{Greso, GresoConfig, HistoryReject};
pub use rules::{Band, Cvar, PointEstimate, Risk, Target, TopPartial, TopVariance, Uniform};

use crate::error::{Result, SamplerError};
use crate::outcome::Outcome;
use crate::predictor::Quantity;
use rand_chacha::ChaCha8Rng;

/// Predictions for the candidate pool, one vector per requested quantity (others empty).
#[derive(Debug, Default, Clone)]
pub struct Scores {
    /// E[p] per candidate, if requested.
    pub mean: Vec<f32>,
    /// Std of the belief per candidate, if requested.
    pub std: Vec<f32>,
    /// One posterior draw per candidate, if requested.
    pub sample: Vec<f32>,
    /// P(0 < s < k) per candidate, if requested.
    pub partial: Vec<f32>,
}

impl Scores {
    /// The vector for `q`, or an error naming the missing quantity (a rule/sampler mismatch).
    pub fn get(&self, q: Quantity, n: usize) -> Result<&[f32]> {
        let v = match q {
            Quantity::Mean => &self.mean,
            Quantity::Std => &self.std,
            Quantity::Sample => &self.sample,
            Quantity::Partial => &self.partial,
        };
        if v.len() != n {
            return Err(SamplerError::InvalidState(format!(
                "acquisition needs {q:?} for {n} candidates, got {}",
                v.len()
            )));
        }
        Ok(v)
    }

    /// Mutable slot for `q` (used by the sampler to fill it).
    pub fn slot(&mut self, q: Quantity) -> &mut Vec<f32> {
        match q {
            Quantity::Mean => &mut self.mean,
            Quantity::Std => &mut self.std,
            Quantity::Sample => &mut self.sample,
            Quantity::Partial => &mut self.partial,
        }
    }
}

/// Chooses B candidates. Returns positions into `candidates`, distinct, exactly `b` of them.
pub trait Acquisition: Send + Sync {
    /// Short name for state files and telemetry.
    fn name(&self) -> &str;
    /// Quantities this rule reads from [`Scores`].
    fn needs(&self) -> Vec<Quantity>;
    /// Picks `b` distinct positions of `candidates` (`b <= candidates.len()` is checked before).
    fn select(
        &mut self,
        candidates: &[u32],
        b: usize,
        scores: &Scores,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<usize>>;
    /// Learns from a step's outcomes; stateless rules ignore it.
    fn observe(&mut self, _outcomes: &[Outcome]) -> Result<()> {
        Ok(())
    }
    /// Serialisable state for checkpoints (Null when stateless).
    fn save(&self) -> Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }
    /// Restores [`Acquisition::save`] output.
    fn load(&mut self, _state: serde_json::Value) -> Result<()> {
        Ok(())
    }
    /// The embedding table this rule reads, if it uses prompt embeddings (GPS diversity).
    fn embeddings(&self) -> Option<crate::embedding::SharedEmbeddings> {
        None
    }
}
