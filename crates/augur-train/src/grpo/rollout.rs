//! One rollout batch: prompts → G completions each with the current policy (adapters on) →
//! verifier scores. The loop and DAPO dynamic sampling both call [`Roller::roll`].

use std::time::Instant;

use augur_model::TokenizerBundle;
use augur_reward::{Reference, Score, Verifier};
use augur_rollout::{ChatTemplate, Engine, GenerationStats, Message, Sample, SamplingParams};
use augur_sampler::Outcome;

use super::config::GrpoConfig;
use super::data::Prompt;
use crate::Result;

/// Rolled-out and scored groups: `samples` sorted by (prompt, sample), G per prompt.
#[derive(Debug, Default)]
pub struct Batch {
    /// Dataset index of each prompt.
    pub idx: Vec<usize>,
    /// Tokenised prompt of each group.
    pub prompt_ids: Vec<Vec<u32>>,
    /// `prompt_index` refers to `idx` / `prompt_ids`.
    pub samples: Vec<Sample>,
    pub scores: Vec<Score>,
    pub gen: GenerationStats,
    pub rollout_secs: f64,
    pub reward_secs: f64,
}

impl Batch {
    /// Per-prompt outcomes (successes = completions judged `correct`, rollouts = G).
    pub fn outcomes(&self, g: usize) -> Vec<Outcome> {
        self.idx
            .iter()
            .enumerate()
            .map(|(p, &i)| {
                let s = self.scores[p * g..(p + 1) * g]
                    .iter()
                    .filter(|s| s.correct)
                    .count();
                Outcome::new(i as u32, s as u32, g as u32)
            })
            .collect()
    }

    /// Appends the groups at positions `keep` of `other` (DS keeps some groups of each round).
    pub fn extend_groups(&mut self, other: &Batch, keep: &[usize], g: usize) {
        for &p in keep {
            let new_p = self.idx.len();
            self.idx.push(other.idx[p]);
            self.prompt_ids.push(other.prompt_ids[p].clone());
            for j in p * g..(p + 1) * g {
                let mut s = other.samples[j].clone();
                s.prompt_index = new_p;
                self.samples.push(s);
                self.scores.push(other.scores[j].clone());
            }
        }
    }

    /// The batch a DS step trains on, from its rollout `rounds`: the groups of the `kept`
    /// prompt ids (0 < s < k) first, then, when max_rounds ran out before `b` were found, the
    /// other groups in rollout order up to `b` (zero advantage under GRPO); every round's
    /// costs count.
    pub fn from_ds_rounds(rounds: &[Batch], kept: &[u32], b: usize, g: usize) -> Batch {
        let is_kept = |r: &Batch, p: usize| kept.contains(&(r.idx[p] as u32));
        let mut batch = Batch::default();
        for r in rounds {
            let keep: Vec<usize> = (0..r.idx.len()).filter(|&p| is_kept(r, p)).collect();
            batch.extend_groups(r, &keep, g);
        }
        for r in rounds {
            let room = b.saturating_sub(batch.idx.len());
            let fill: Vec<usize> = (0..r.idx.len())
                .filter(|&p| !is_kept(r, p))
                .take(room)
                .collect();
            batch.extend_groups(r, &fill, g);
            batch.add_costs(r);
        }
        batch
    }

    /// Adds another batch's timings and token counts.
    pub fn add_costs(&mut self, other: &Batch) {
        self.gen.prefill_tokens += other.gen.prefill_tokens;
        self.gen.generated_tokens += other.gen.generated_tokens;
        self.gen.prefill_secs += other.gen.prefill_secs;
        self.gen.decode_secs += other.gen.decode_secs;
        self.rollout_secs += other.rollout_secs;
        self.reward_secs += other.reward_secs;
    }
}

/// Everything a rollout needs, borrowed from the loop. Training and evaluation each have one
/// (different prompts and sampling parameters, same engine and verifier).
pub struct Roller<'a> {
    pub cfg: &'a GrpoConfig,
    /// Sampling parameters; `seed` is replaced by the one passed to [`Roller::roll`].
    pub params: SamplingParams,
    pub engine: &'a Engine<'a>,
    pub tok: &'a TokenizerBundle,
    pub template: &'a ChatTemplate,
    pub prompts: &'a [Prompt],
    pub verifier: &'a dyn Verifier,
}

/// `p`'s token ids as the policy sees them (through the chat template unless `data.raw`).
pub fn encode_prompt(
    cfg: &GrpoConfig,
    template: &ChatTemplate,
    tok: &TokenizerBundle,
    p: &Prompt,
) -> Result<Vec<u32>> {
    let text = match cfg.data.raw {
        true => p.text.clone(),
        false => template.render(&[Message::user(&p.text)], true)?,
    };
    Ok(tok.encode(&text)?)
}

impl Roller<'_> {
    /// The prompt's token ids (through the chat template unless `data.raw`).
    pub fn encode(&self, i: usize) -> Result<Vec<u32>> {
        encode_prompt(self.cfg, self.template, self.tok, &self.prompts[i])
    }

    /// Rolls out `params.n` completions of each prompt in `idx` with sampling seed `seed`, and
    /// scores them.
    pub fn roll(&self, idx: &[usize], seed: u64) -> Result<Batch> {
        let prompt_ids = idx
            .iter()
            .map(|&i| self.encode(i))
            .collect::<Result<Vec<_>>>()?;
        let t0 = Instant::now();
        let params = SamplingParams {
            seed,
            ..self.params.clone()
        };
        let (mut samples, gen) = self.engine.generate(&prompt_ids, &params, &mut |_| {})?;
        samples.sort_by_key(|s| (s.prompt_index, s.sample_index));
        let rollout_secs = t0.elapsed().as_secs_f64();

        let t0 = Instant::now();
        let items: Vec<(&str, &Reference)> = samples
            .iter()
            .map(|s| {
                (
                    s.text.as_str(),
                    &self.prompts[idx[s.prompt_index]].reference,
                )
            })
            .collect();
        let scores = self.verifier.score_batch(&items);
        Ok(Batch {
            idx: idx.to_vec(),
            prompt_ids,
            samples,
            scores,
            gen,
            rollout_secs,
            reward_secs: t0.elapsed().as_secs_f64(),
        })
    }
}
