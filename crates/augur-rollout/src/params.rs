//! Sampling parameters and their validation (done before any compute).

use serde::{Deserialize, Serialize};

use crate::error::{Result, RolloutError};

/// How to sample completions. `temperature = 0` means greedy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingParams {
    /// Samples per prompt (GRPO's group size G).
    pub n: usize,
    pub temperature: f32,
    /// Nucleus mass in (0, 1]; 1 disables.
    pub top_p: f32,
    /// Keep the k most likely tokens; 0 disables.
    pub top_k: usize,
    /// Drop tokens whose probability is below `min_p` times the top probability; 0 disables.
    pub min_p: f32,
    /// CTRL-style penalty on tokens already in prompt or completion; 1 disables (default).
    pub repetition_penalty: f32,
    pub max_new_tokens: usize,
    /// Extra ids that end a sample (the tokenizer's EOS ids always do).
    pub stop_token_ids: Vec<u32>,
    /// Strings that end a sample; the text is cut before the stop string.
    pub stop_strings: Vec<String>,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            n: 1,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            max_new_tokens: 256,
            stop_token_ids: Vec::new(),
            stop_strings: Vec::new(),
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Rejects values that would make sampling undefined.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |field: &'static str, problem: String| Err(RolloutError::Param { field, problem });
        if self.n == 0 {
            return bad("n", "must be at least 1".into());
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("temperature", format!("{} is not >= 0", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", format!("{} is not in (0, 1]", self.top_p));
        }
        if !(0.0..1.0).contains(&self.min_p) {
            return bad("min_p", format!("{} is not in [0, 1)", self.min_p));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(
                "repetition_penalty",
                format!("{} is not > 0", self.repetition_penalty),
            );
        }
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens", "must be at least 1".into());
        }
        if self.stop_strings.iter().any(String::is_empty) {
            return bad("stop_strings", "contains an empty string".into());
        }
        Ok(())
    }
}
