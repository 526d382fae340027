//! Prompts and their references from a JSONL file, and a seeded sampler over them whose whole state
//! is one cursor (so a checkpoint restores it exactly).

use std::path::Path;

use augur_reward::jsonl::{reference_of, suspicious_reference, TaskKind};
use augur_reward::Reference;
use serde_json::{Map, Value};

use crate::template::PromptTemplate;
use crate::{Error, Result};

/// One training prompt: its text (before the chat template) and what a completion is checked against.
#[derive(Clone, Debug)]
pub struct Prompt {
    pub text: String,
    pub reference: Reference,
}

/// How a dataset line becomes a prompt and its reference.
#[derive(Clone, Debug)]
pub struct PromptSpec {
    /// Field holding the prompt text, used when there is no template.
    pub field: String,
    /// `[data] template`: builds the prompt from several fields, with instructions around them.
    pub template: Option<PromptTemplate>,
    /// Task of the verifier; decides which reference fields are read.
    pub task: TaskKind,
    /// `[reward] answer_field`: the math reference field (see [`reference_of`]).
    pub answer_field: Option<String>,
}

impl PromptSpec {
    /// The prompt text and reference of one parsed line.
    pub fn prompt_of(&self, obj: &Map<String, Value>) -> std::result::Result<Prompt, String> {
        let text = match &self.template {
            Some(t) => t.render(obj)?,
            None => obj
                .get(&self.field)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("missing string field `{}`", self.field))?
                .to_string(),
        };
        let reference = reference_of(self.task, obj, self.answer_field.as_deref())?;
        Ok(Prompt { text, reference })
    }
}

/// Reads `path`: each non-empty line a JSON object with the prompt's and the task's reference
/// fields. Warns once (naming the line) when a math reference looks like a whole solution.
pub fn load_prompts(path: &Path, spec: &PromptSpec) -> Result<Vec<Prompt>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    let mut out = Vec::new();
    let mut warned = false;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = |m: String| Error::Config(format!("{}:{}: {m}", path.display(), i + 1));
        let obj: Map<String, Value> = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
        let prompt = spec.prompt_of(&obj).map_err(at)?;
        if !warned {
            if let Some(why) = suspicious_reference(&prompt.reference) {
                eprintln!("warning: {}:{}: {why}", path.display(), i + 1);
                warned = true;
            }
        }
        out.push(prompt);
    }
    if out.is_empty() {
        return Err(Error::Config(format!("{}: no prompts", path.display())));
    }
    Ok(out)
}

/// SplitMix64: tiny, seedable, and its state is one `u64`.
#[derive(Clone, Copy, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is negligible for dataset sizes).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Draws prompt indices without replacement within an epoch, in an order fixed by the seed and the
/// epoch number. `cursor` counts prompts drawn so far and is the sampler's whole state.
#[derive(Clone, Debug)]
pub struct PromptSampler {
    len: usize,
    seed: u64,
    pub cursor: u64,
    order: Vec<usize>,
    order_epoch: Option<u64>,
}

impl PromptSampler {
    pub fn new(len: usize, seed: u64, cursor: u64) -> Self {
        Self {
            len,
            seed,
            cursor,
            order: Vec::new(),
            order_epoch: None,
        }
    }

    /// The next `n` prompt indices.
    pub fn next_batch(&mut self, n: usize) -> Vec<usize> {
        (0..n).map(|_| self.next_index()).collect()
    }

    fn next_index(&mut self) -> usize {
        let epoch = self.cursor / self.len as u64;
        if self.order_epoch != Some(epoch) {
            self.order = (0..self.len).collect();
            let mut rng = SplitMix64(self.seed ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03));
            for i in (1..self.len).rev() {
                self.order.swap(i, rng.below(i + 1));
            }
            self.order_epoch = Some(epoch);
        }
        let i = self.order[(self.cursor % self.len as u64) as usize];
        self.cursor += 1;
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_is_a_permutation_per_epoch_and_resumable() {
        let mut s = PromptSampler::new(10, 7, 0);
        let mut first = s.next_batch(10);
        let again = s.next_batch(3);
        first.sort();
        assert_eq!(first, (0..10).collect::<Vec<_>>());
        let mut resumed = PromptSampler::new(10, 7, 10);
        assert_eq!(resumed.next_batch(3), again);
    }
}
