//! A simulated RL learner, so samplers can be compared in milliseconds instead of GPU hours.
//!
//! Each prompt i has a latent initial logit z_i (drawn from a mixture: by default ~40% too hard,
//! ~30% too easy, the rest in between, as in real math RL). The policy's success probability is
//! p_i = σ(z_i + θ + u_i): θ is general skill shared by all prompts, u_i what was learned on
//! prompt i itself. Rollouts are Bernoulli(p_i). Like GRPO, only groups with 0 < s < k carry a
//! gradient: each such group raises u_i by `lr_prompt` and θ by `lr_global / B`. Accuracy is
//! the expected success rate over the whole prompt set (noise-free, so runs compare cleanly).

use crate::error::{Result, SamplerError};
use crate::outcome::Outcome;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

/// One component of the initial-logit mixture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// Mixture weight (normalised over components).
    pub weight: f64,
    /// Mean initial logit (−5 ≈ 0.7% success, +5 ≈ 99.3%).
    pub mean: f64,
    /// Std of the initial logit.
    pub std: f64,
}

/// Parameters of the simulated learner and of the simulated training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Number of prompts in the training set.
    pub num_prompts: usize,
    /// Rollouts per prompt k.
    pub group_size: u32,
    /// Prompts per training step B.
    pub batch_size: usize,
    /// Candidate pool per step = pool_ratio × B random prompts (0 = the whole dataset).
    pub pool_ratio: f64,
    /// Training steps per run.
    pub steps: usize,
    /// Initial difficulty mixture (logit of the initial success rate).
    pub difficulty: Vec<Component>,
    /// Logit gain of a prompt per effective group trained on it.
    pub lr_prompt: f64,
    /// Logit gain of general skill per step if all B groups are effective.
    pub lr_global: f64,
    /// Steps excluded from the mean ρ (predictors need history first).
    pub warmup_steps: usize,
    /// Accuracy whose first crossing is reported; `None` = uniform's final accuracy, per seed.
    pub target_accuracy: Option<f64>,
    /// Dimension of the synthetic prompt embeddings (only samplers that read embeddings, GPS,
    /// see them; other methods' runs are unchanged).
    pub embedding_dim: usize,
    /// Per-coordinate noise std of the synthetic embeddings (signal std ≈ 1.4).
    pub embedding_noise: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            num_prompts: 2048,
            group_size: 8,
            batch_size: 32,
            pool_ratio: 16.0,
            steps: 300,
            difficulty: vec![
                Component {
                    weight: 0.4,
                    mean: -5.5,
                    std: 1.0,
                },
                Component {
                    weight: 0.3,
                    mean: 5.5,
                    std: 1.0,
                },
                Component {
                    weight: 0.3,
                    mean: 0.0,
                    std: 1.5,
                },
            ],
            lr_prompt: 0.1,
            lr_global: 0.03,
            warmup_steps: 20,
            target_accuracy: None,
            embedding_dim: 32,
            embedding_noise: 1.0,
        }
    }
}

impl SimConfig {
    /// Rejects configs that cannot run (empty sets, B larger than the dataset, bad mixtures).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(SamplerError::InvalidConfig(format!("sim: {m}")));
        if self.num_prompts == 0 || self.batch_size == 0 || self.group_size == 0 || self.steps == 0
        {
            return bad("num_prompts, batch_size, group_size and steps must be >= 1".into());
        }
        if self.batch_size > self.num_prompts {
            return bad(format!(
                "batch_size {} > num_prompts {}",
                self.batch_size, self.num_prompts
            ));
        }
        if self.num_prompts > crate::outcome::MAX_PROMPT_ID as usize {
            return bad(format!("num_prompts {} too large", self.num_prompts));
        }
        let w: f64 = self.difficulty.iter().map(|c| c.weight).sum();
        if self.difficulty.is_empty()
            || w <= 0.0
            || self
                .difficulty
                .iter()
                .any(|c| c.weight < 0.0 || c.std.is_nan() || c.std < 0.0 || !c.mean.is_finite())
        {
            return bad(
                "difficulty needs components with weight >= 0 (sum > 0) and std >= 0".into(),
            );
        }
        if self.embedding_dim == 0 || self.embedding_noise.is_nan() || self.embedding_noise < 0.0 {
            return bad("embedding_dim must be >= 1 and embedding_noise >= 0".into());
        }
        if self.pool_ratio.is_nan()
            || self.pool_ratio < 0.0
            || !self.lr_prompt.is_finite()
            || !self.lr_global.is_finite()
        {
            return bad(
                "pool_ratio, lr_prompt and lr_global must be finite, pool_ratio >= 0".into(),
            );
        }
        Ok(())
    }

    /// Candidate pool size per step.
    pub fn pool_size(&self) -> usize {
        if self.pool_ratio == 0.0 {
            return self.num_prompts;
        }
        ((self.pool_ratio * self.batch_size as f64).round() as usize)
            .clamp(self.batch_size, self.num_prompts)
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The simulated policy and its training set.
#[derive(Debug, Clone)]
pub struct SimLearner {
    z: Vec<f64>,
    u: Vec<f64>,
    theta: f64,
    k: u32,
    b: usize,
    lr_prompt: f64,
    lr_global: f64,
    rng: ChaCha8Rng,
}

impl SimLearner {
    /// Draws the prompt set from `seed` (same seed → same prompts for every method).
    pub fn new(cfg: &SimConfig, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_1EA2);
        let total: f64 = cfg.difficulty.iter().map(|c| c.weight).sum();
        let mut z = Vec::with_capacity(cfg.num_prompts);
        for _ in 0..cfg.num_prompts {
            let mut r = rng.random::<f64>() * total;
            let comp = cfg
                .difficulty
                .iter()
                .find(|c| {
                    r -= c.weight;
                    r < 0.0
                })
                .unwrap_or(&cfg.difficulty[cfg.difficulty.len() - 1]);
            let n = Normal::new(comp.mean, comp.std)
                .map_err(|e| SamplerError::InvalidConfig(format!("sim difficulty: {e}")))?;
            z.push(n.sample(&mut rng));
        }
        Ok(SimLearner {
            u: vec![0.0; z.len()],
            z,
            theta: 0.0,
            k: cfg.group_size,
            b: cfg.batch_size,
            lr_prompt: cfg.lr_prompt,
            lr_global: cfg.lr_global,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xB011_0075),
        })
    }

    /// Number of prompts.
    pub fn len(&self) -> usize {
        self.z.len()
    }

    /// Whether the prompt set is empty (never, after `new`).
    pub fn is_empty(&self) -> bool {
        self.z.is_empty()
    }

    /// True current success probability of prompt `id` (what the oracle sees).
    pub fn success_prob(&self, id: u32) -> f64 {
        let i = id as usize;
        sigmoid(self.z[i] + self.theta + self.u[i])
    }

    /// All true success probabilities.
    pub fn success_probs(&self) -> Vec<f32> {
        (0..self.z.len() as u32)
            .map(|i| self.success_prob(i) as f32)
            .collect()
    }

    /// Expected accuracy over the whole prompt set.
    pub fn accuracy(&self) -> f64 {
        (0..self.z.len() as u32)
            .map(|i| self.success_prob(i))
            .sum::<f64>()
            / self.z.len() as f64
    }

    /// Synthetic embeddings of every prompt (row-major, `len() × dim`), correlated with the
    /// latent difficulty so a shared model can generalise: e_i = c + (z_i / 4)·w + noise·ε_i
    /// with c, w, ε ~ N(0, I) drawn from `seed` (a stream separate from the rollouts). They
    /// carry the *initial* difficulty only; what the policy learned since must be inferred
    /// from outcomes. Real prompts use mean-pooled base-model hidden states instead.
    pub fn embeddings(&self, dim: usize, noise: f64, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xE3BE_DD1E);
        let n01 = Normal::new(0.0, 1.0).expect("unit normal");
        let c: Vec<f64> = (0..dim).map(|_| n01.sample(&mut rng)).collect();
        let w: Vec<f64> = (0..dim).map(|_| n01.sample(&mut rng)).collect();
        let mut out = Vec::with_capacity(self.z.len() * dim);
        for &z in &self.z {
            for j in 0..dim {
                out.push((c[j] + z / 4.0 * w[j] + noise * n01.sample(&mut rng)) as f32);
            }
        }
        out
    }

    /// k Bernoulli rollouts for each id.
    pub fn rollout(&mut self, ids: &[u32]) -> Result<Vec<Outcome>> {
        ids.iter()
            .map(|&id| {
                if id as usize >= self.z.len() {
                    return Err(SamplerError::InvalidArgument(format!(
                        "sim: no prompt {id}"
                    )));
                }
                let p = self.success_prob(id);
                let s = (0..self.k).filter(|_| self.rng.random::<f64>() < p).count() as u32;
                Ok(Outcome::new(id, s, self.k))
            })
            .collect()
    }

    /// One policy update on the given groups; only groups with 0 < s < k teach anything.
    /// Returns the number of effective groups.
    pub fn train(&mut self, groups: &[Outcome]) -> usize {
        let mut eff = 0;
        for o in groups.iter().filter(|o| o.is_effective()) {
            if let Some(u) = self.u.get_mut(o.id as usize) {
                *u += self.lr_prompt;
                eff += 1;
            }
        }
        self.theta += self.lr_global * eff as f64 / self.b as f64;
        eff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_mix_and_learning() {
        let cfg = SimConfig::default();
        let mut l = SimLearner::new(&cfg, 1).unwrap();
        let p = l.success_probs();
        let n = p.len() as f64;
        let hard = p.iter().filter(|&&x| x < 0.02).count() as f64 / n;
        let easy = p.iter().filter(|&&x| x > 0.98).count() as f64 / n;
        assert!((0.33..0.47).contains(&hard), "too hard {hard}");
        assert!((0.24..0.36).contains(&easy), "too easy {easy}");
        let a0 = l.accuracy();
        let before = l.success_prob(5);
        l.train(&[Outcome::new(5, 3, 8)]);
        assert!(l.success_prob(5) > before);
        assert!(l.accuracy() > a0);
        let a1 = l.accuracy();
        l.train(&[Outcome::new(6, 0, 8), Outcome::new(7, 8, 8)]);
        assert_eq!(l.accuracy(), a1, "zero-variance groups teach nothing");
        let o = l.rollout(&[1, 2, 3]).unwrap();
        assert!(o.iter().all(|o| o.rollouts == 8 && o.successes <= 8));
        assert!(l.rollout(&[1 << 20]).is_err());
        // Determinism.
        let mut a = SimLearner::new(&cfg, 9).unwrap();
        let mut b = SimLearner::new(&cfg, 9).unwrap();
        assert_eq!(
            a.rollout(&[0, 1, 2]).unwrap(),
            b.rollout(&[0, 1, 2]).unwrap()
        );
    }
}
