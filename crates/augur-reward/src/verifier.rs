//! The common interface of all verifiers: one completion plus its reference in, one `Score` out.
//!
//! The GRPO loop holds a `Box<dyn Verifier>` and calls [`Verifier::score_batch`] on a whole rollout group; each
//! verifier picks its own parallelism (rayon for CPU-bound checks, a bounded worker pool for subprocesses).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::reference::Reference;

/// The outcome of checking one completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// The scalar reward fed to the advantage computation.
    pub reward: f32,
    /// Whether the answer is judged correct (reward may be partial even when false).
    pub correct: bool,
    /// What was extracted from the completion (an answer, an expression, or the program), if anything.
    pub extracted: Option<String>,
    /// A short human-readable reason: "correct", "no boxed answer", "timeout", ...
    pub reason: String,
}

impl Score {
    /// A zero-reward score with the given reason.
    pub fn fail(extracted: Option<String>, reason: impl Into<String>) -> Self {
        Score {
            reward: 0.0,
            correct: false,
            extracted,
            reason: reason.into(),
        }
    }

    /// A full-reward, correct score.
    pub fn pass(extracted: Option<String>) -> Self {
        Score {
            reward: 1.0,
            correct: true,
            extracted,
            reason: "correct".into(),
        }
    }
}

/// A reward function for one task family. Implementations must be cheap to share across threads.
pub trait Verifier: Send + Sync {
    /// Scores one completion. Never panics on any input: malformed text yields a zero score with a reason.
    fn score(&self, completion: &str, reference: &Reference) -> Score;

    /// Scores a batch, in parallel, returning scores in input order.
    ///
    /// The default uses the global rayon pool, right for CPU-bound checks.
    fn score_batch(&self, items: &[(&str, &Reference)]) -> Vec<Score> {
        items.par_iter().map(|(c, r)| self.score(c, r)).collect()
    }
}

/// The score returned when a verifier is handed a reference of another task.
pub(crate) fn wrong_reference(expected: &str) -> Score {
    Score::fail(None, format!("reference is not a {expected} reference"))
}
