//! What a rollout step reports back to the sampler: per prompt, successes out of rollouts.

use crate::error::{Result, SamplerError};
use serde::{Deserialize, Serialize};

/// Largest prompt id accepted (33.5 M prompts; DPS state for all of them is ~2 GiB). Keeps a
/// typo'd id from allocating tens of gigabytes of per-prompt state.
pub const MAX_PROMPT_ID: u32 = (1 << 25) - 1;

/// Outcome of one prompt's group of rollouts: `successes` correct answers out of `rollouts`.
///
/// Binary rewards are assumed (a rollout is a success or not), as in MoPPS and DPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Dense prompt index (0..num_prompts) in the training set.
    pub id: u32,
    /// Number of successful rollouts, at most `rollouts`.
    pub successes: u32,
    /// Number of rollouts (group size k), at least 1.
    pub rollouts: u32,
}

/// Solving state of a prompt after one group, as DPS defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SolveState {
    /// s = 0: every rollout failed.
    Unsolved = 0,
    /// 0 < s < k: the only state with a non-zero GRPO advantage.
    Partial = 1,
    /// s = k: every rollout succeeded.
    Solved = 2,
}

impl Outcome {
    /// Builds an outcome; checked by [`Outcome::validate`] where it enters the sampler.
    pub fn new(id: u32, successes: u32, rollouts: u32) -> Self {
        Outcome {
            id,
            successes,
            rollouts,
        }
    }

    /// Rejects impossible outcomes (no rollouts, more successes than rollouts, id out of range).
    pub fn validate(&self) -> Result<()> {
        if self.rollouts == 0 {
            return Err(SamplerError::InvalidArgument(format!(
                "prompt {}: rollouts must be >= 1",
                self.id
            )));
        }
        if self.successes > self.rollouts {
            return Err(SamplerError::InvalidArgument(format!(
                "prompt {}: successes {} > rollouts {}",
                self.id, self.successes, self.rollouts
            )));
        }
        if self.id > MAX_PROMPT_ID {
            return Err(SamplerError::InvalidArgument(format!(
                "prompt id {} > max {}",
                self.id, MAX_PROMPT_ID
            )));
        }
        Ok(())
    }

    /// Observed success rate s/k.
    pub fn rate(&self) -> f32 {
        self.successes as f32 / self.rollouts as f32
    }

    /// Whether the group carries a learning signal (0 < s < k).
    pub fn is_effective(&self) -> bool {
        self.successes > 0 && self.successes < self.rollouts
    }

    /// DPS solving state of this group.
    pub fn state(&self) -> SolveState {
        if self.successes == 0 {
            SolveState::Unsolved
        } else if self.successes == self.rollouts {
            SolveState::Solved
        } else {
            SolveState::Partial
        }
    }
}

/// Validates a batch of outcomes and rejects a prompt reported twice in one step
/// (the update rules assume one group per prompt per step).
pub fn validate_batch(outcomes: &[Outcome]) -> Result<()> {
    let mut ids: Vec<u32> = Vec::with_capacity(outcomes.len());
    for o in outcomes {
        o.validate()?;
        ids.push(o.id);
    }
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(SamplerError::InvalidArgument(format!(
            "prompt {} observed twice in one step",
            w[0]
        )));
    }
    Ok(())
}

/// Rejects candidate lists with out-of-range ids; duplicates are allowed (they are just scored twice).
pub fn validate_candidates(candidates: &[u32], b: usize) -> Result<()> {
    if b == 0 {
        return Err(SamplerError::InvalidArgument(
            "batch size B must be >= 1".into(),
        ));
    }
    if b > candidates.len() {
        return Err(SamplerError::InvalidArgument(format!(
            "batch size B={} > {} candidates",
            b,
            candidates.len()
        )));
    }
    if let Some(bad) = candidates.iter().find(|&&id| id > MAX_PROMPT_ID) {
        return Err(SamplerError::InvalidArgument(format!(
            "candidate id {} > max {}",
            bad, MAX_PROMPT_ID
        )));
    }
    Ok(())
}
