//! MoPPS predictor (arXiv 2507.04632): an independent Beta-Bernoulli posterior per prompt.
//!
//! Prior Beta(α0, β0) (default (1, 1)). After a step, only the rolled-out prompts update:
//! `α ← λα + (1−λ)α0 + s`, `β ← λβ + (1−λ)β0 + (k−s)`. λ < 1 forgets old evidence so the
//! posterior can follow a policy that keeps changing (paper: λ = 1 for MATH, 0.5 for Countdown).
//! Observe is O(batch); predict is O(candidates), parallel over chunks.

use super::{check_len, ensure_len, PredictCtx, Predictor, Quantity};
use crate::error::{Result, SamplerError};
use crate::outcome::{validate_batch, Outcome};
use crate::random::{chunk_rng, for_each_chunk, sample_beta};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Hyper-parameters of the Beta-Bernoulli predictor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BetaConfig {
    /// Prior successes α0 (> 0).
    pub alpha0: f32,
    /// Prior failures β0 (> 0).
    pub beta0: f32,
    /// Decay λ in [0, 1]: weight kept by old evidence at each update of a prompt.
    pub lambda: f32,
    /// Optional CSV of offline results (`id,successes,rollouts` per line) added to the prior.
    pub warm_start: Option<String>,
}

impl Default for BetaConfig {
    fn default() -> Self {
        BetaConfig {
            alpha0: 1.0,
            beta0: 1.0,
            lambda: 1.0,
            warm_start: None,
        }
    }
}

impl BetaConfig {
    /// Rejects priors that are not proper and decays outside [0, 1].
    pub fn validate(&self) -> Result<()> {
        let ok = self.alpha0 > 0.0
            && self.beta0 > 0.0
            && self.alpha0.is_finite()
            && self.beta0.is_finite()
            && (0.0..=1.0).contains(&self.lambda);
        if !ok {
            return Err(SamplerError::InvalidConfig(format!(
                "beta predictor needs alpha0 > 0, beta0 > 0, 0 <= lambda <= 1, got {self:?}"
            )));
        }
        Ok(())
    }
}

/// Per-prompt Beta posteriors, stored flat as `[α, β]` indexed by prompt id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BetaPredictor {
    cfg: BetaConfig,
    /// `[α, β]` per prompt id; ids past the end are unseen and use the prior.
    ab: Vec<[f32; 2]>,
}

impl BetaPredictor {
    /// Builds the predictor and applies the warm-start file if the config names one.
    pub fn new(cfg: BetaConfig) -> Result<Self> {
        cfg.validate()?;
        let mut p = BetaPredictor {
            cfg: cfg.clone(),
            ab: Vec::new(),
        };
        if let Some(path) = &cfg.warm_start {
            p.warm_start_from_file(path)?;
        }
        Ok(p)
    }

    /// Posterior parameters of one prompt (the prior if never observed).
    pub fn params(&self, id: u32) -> (f32, f32) {
        match self.ab.get(id as usize) {
            Some(&[a, b]) => (a, b),
            None => (self.cfg.alpha0, self.cfg.beta0),
        }
    }

    /// Adds offline evidence without decay: α += s, β += k − s (MoPPS "prior knowledge" start).
    pub fn warm_start(&mut self, outcomes: &[Outcome]) -> Result<()> {
        for o in outcomes {
            o.validate()?;
            let (a0, b0) = (self.cfg.alpha0, self.cfg.beta0);
            ensure_len(&mut self.ab, o.id, [a0, b0])?;
            let e = &mut self.ab[o.id as usize];
            e[0] += o.successes as f32;
            e[1] += (o.rollouts - o.successes) as f32;
        }
        Ok(())
    }

    /// Reads `id,successes,rollouts` lines (header and `#` comments allowed) and warm-starts.
    pub fn warm_start_from_file(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| SamplerError::io(path, e))?;
        let outcomes = parse_offline_csv(&text)
            .map_err(|e| SamplerError::InvalidArgument(format!("{}: {e}", path.display())))?;
        self.warm_start(&outcomes)
    }
}

/// Parses the warm-start CSV format; the error names the bad line.
pub fn parse_offline_csv(text: &str) -> std::result::Result<Vec<Outcome>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (n == 0 && line.starts_with("id")) {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let parse = |s: &str| s.parse::<u32>().map_err(|e| format!("line {}: {e}", n + 1));
        if f.len() != 3 {
            return Err(format!("line {}: expected id,successes,rollouts", n + 1));
        }
        out.push(Outcome::new(parse(f[0])?, parse(f[1])?, parse(f[2])?));
    }
    Ok(out)
}

/// E[p^k] under Beta(a, b) = Π_{j<k} (a+j)/(a+b+j).
fn beta_moment(a: f64, b: f64, k: u32) -> f64 {
    (0..k).fold(1.0, |acc, j| acc * (a + j as f64) / (a + b + j as f64))
}

/// P(0 < s < k) for s ~ BetaBinomial(k, a, b).
pub fn beta_partial(a: f32, b: f32, k: u32) -> f32 {
    let (a, b) = (a as f64, b as f64);
    (1.0 - beta_moment(a, b, k) - beta_moment(b, a, k)).max(0.0) as f32
}

impl Predictor for BetaPredictor {
    fn name(&self) -> &str {
        "beta"
    }

    fn predict(&self, ids: &[u32], q: Quantity, ctx: PredictCtx, out: &mut [f32]) -> Result<()> {
        check_len(ids, out)?;
        let work = |c: usize, ids: &[u32], out: &mut [f32]| {
            if q == Quantity::Sample {
                // The hot path of Thompson sampling: one draw per candidate, nothing else.
                let mut rng = chunk_rng(ctx.seed, c);
                for (o, &id) in out.iter_mut().zip(ids) {
                    let (a, b) = self.params(id);
                    *o = sample_beta(&mut rng, a, b);
                }
                return;
            }
            for (o, &id) in out.iter_mut().zip(ids) {
                let (a, b) = self.params(id);
                *o = match q {
                    Quantity::Mean => a / (a + b),
                    Quantity::Std => (a * b / ((a + b) * (a + b) * (a + b + 1.0))).sqrt(),
                    // Partial (Sample returned above).
                    _ => beta_partial(a, b, ctx.k),
                };
            }
        };
        for_each_chunk(ids, out, work);
        Ok(())
    }

    fn observe(&mut self, outcomes: &[Outcome]) -> Result<()> {
        validate_batch(outcomes)?;
        let BetaConfig {
            alpha0: a0,
            beta0: b0,
            lambda: l,
            ..
        } = self.cfg;
        for o in outcomes {
            ensure_len(&mut self.ab, o.id, [a0, b0])?;
            let e = &mut self.ab[o.id as usize];
            let s = o.successes as f32;
            let f = (o.rollouts - o.successes) as f32;
            e[0] = l * e[0] + (1.0 - l) * a0 + s;
            e[1] = l * e[1] + (1.0 - l) * b0 + f;
        }
        Ok(())
    }

    fn save(&self) -> Result<serde_json::Value> {
        Ok(serde_json::to_value(self)?)
    }

    fn load(&mut self, state: serde_json::Value) -> Result<()> {
        let p: BetaPredictor = serde_json::from_value(state)
            .map_err(|e| SamplerError::InvalidState(format!("beta predictor: {e}")))?;
        p.cfg.validate()?;
        *self = p;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::CHUNK;

    fn ctx() -> PredictCtx {
        PredictCtx { k: 4, seed: 1 }
    }

    fn mean(p: &BetaPredictor, id: u32) -> f32 {
        let mut out = [0.0];
        p.predict(&[id], Quantity::Mean, ctx(), &mut out).unwrap();
        out[0]
    }

    #[test]
    fn lambda_one_counts_successes_and_failures() {
        let mut p = BetaPredictor::new(BetaConfig::default()).unwrap();
        p.observe(&[Outcome::new(3, 3, 4)]).unwrap();
        assert_eq!(p.params(3), (4.0, 2.0));
        p.observe(&[Outcome::new(3, 0, 4)]).unwrap();
        assert_eq!(p.params(3), (4.0, 6.0));
        assert!((mean(&p, 3) - 0.4).abs() < 1e-6);
        // Unseen prompts keep the prior: mean 0.5, P(partial) = 1 - 2/(k+1) for Beta(1,1).
        assert_eq!(p.params(1000), (1.0, 1.0));
        assert!((mean(&p, 1000) - 0.5).abs() < 1e-6);
        let mut part = [0.0];
        p.predict(&[1000], Quantity::Partial, ctx(), &mut part)
            .unwrap();
        assert!((part[0] - (1.0 - 2.0 / 5.0)).abs() < 1e-6);
    }

    #[test]
    fn lambda_half_decays_toward_prior() {
        let cfg = BetaConfig {
            lambda: 0.5,
            ..Default::default()
        };
        let mut p = BetaPredictor::new(cfg).unwrap();
        // α = 0.5*1 + 0.5*1 + 2 = 3, β = 0.5*1 + 0.5*1 + 2 = 3
        p.observe(&[Outcome::new(0, 2, 4)]).unwrap();
        assert_eq!(p.params(0), (3.0, 3.0));
        // α = 0.5*3 + 0.5 + 4 = 6, β = 0.5*3 + 0.5 + 0 = 2
        p.observe(&[Outcome::new(0, 4, 4)]).unwrap();
        assert_eq!(p.params(0), (6.0, 2.0));
        // A prompt not rolled out does not decay (MoPPS updates only observed prompts).
        p.observe(&[Outcome::new(1, 0, 4)]).unwrap();
        assert_eq!(p.params(0), (6.0, 2.0));
        // Std of Beta(6,2) = sqrt(12 / (64 * 9)).
        let mut sd = [0.0];
        p.predict(&[0], Quantity::Std, ctx(), &mut sd).unwrap();
        assert!((sd[0] - (12.0f32 / 576.0).sqrt()).abs() < 1e-6);
    }

    #[test]
    fn partial_probability_matches_beta_binomial() {
        // Beta(2,1), k=2: P(s=0) = E[(1-p)^2] = 2*1/(3*4)=1/6, P(s=2)=E[p^2]=2*3/(3*4)=1/2.
        assert!((beta_partial(2.0, 1.0, 2) - (1.0 - 1.0 / 6.0 - 0.5)).abs() < 1e-6);
    }

    #[test]
    fn warm_start_and_bad_input() {
        let mut p = BetaPredictor::new(BetaConfig::default()).unwrap();
        let rows = parse_offline_csv("id,successes,rollouts\n5, 6, 8\n# c\n").unwrap();
        p.warm_start(&rows).unwrap();
        assert_eq!(p.params(5), (7.0, 3.0));
        assert!(parse_offline_csv("1,2\n").is_err());
        assert!(p.observe(&[Outcome::new(1, 5, 4)]).is_err());
        assert!(p
            .observe(&[Outcome::new(1, 1, 4), Outcome::new(1, 2, 4)])
            .is_err());
        assert!(BetaPredictor::new(BetaConfig {
            lambda: 1.5,
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn growing_state_one_id_at_a_time_is_linear() {
        // Regression: exact reservation made this quadratic (minutes instead of milliseconds).
        let mut p = BetaPredictor::new(BetaConfig::default()).unwrap();
        let rows: Vec<Outcome> = (0..2_000_000).map(|i| Outcome::new(i, 1, 2)).collect();
        let t = std::time::Instant::now();
        p.warm_start(&rows).unwrap();
        assert_eq!(p.params(1_999_999), (2.0, 2.0));
        assert!(t.elapsed().as_secs() < 5, "took {:?}", t.elapsed());
    }

    #[test]
    fn samples_are_seeded_and_parallel_chunks_agree() {
        let mut p = BetaPredictor::new(BetaConfig::default()).unwrap();
        p.observe(&[Outcome::new(2, 3, 4)]).unwrap();
        let ids: Vec<u32> = (0..20_000).map(|i| i % 7).collect();
        let mut a = vec![0.0; ids.len()];
        let mut b = vec![0.0; ids.len()];
        p.predict(&ids, Quantity::Sample, ctx(), &mut a).unwrap();
        p.predict(&ids, Quantity::Sample, ctx(), &mut b).unwrap();
        assert_eq!(a, b);
        // The first chunk equals a sequential call on that chunk alone.
        let mut c = vec![0.0; CHUNK];
        p.predict(&ids[..CHUNK], Quantity::Sample, ctx(), &mut c)
            .unwrap();
        assert_eq!(&a[..CHUNK], &c[..]);
    }
}
