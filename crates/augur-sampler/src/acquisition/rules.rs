//! Stateless acquisition rules: uniform, closest-to-target, threshold band, top p(1−p),
//! top P(partial) (DPS), CVaR tail and MPTS-style risk (mean + κ·std of failure).
//! Every rule breaks ties at random from the select's RNG ([`smallest_b`]), never by the
//! candidate's position in the pool.

use super::{Acquisition, Scores};
use crate::error::{Result, SamplerError};
use crate::predictor::Quantity;
use crate::random::hash_unit;
use crate::topk::smallest_b;
use rand::seq::index;
use rand::RngCore;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Which single number stands for a prompt's predicted success rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PointEstimate {
    /// Posterior mean: greedy, no exploration.
    Mean,
    /// One posterior draw: Thompson sampling, explores uncertain prompts (MoPPS).
    #[default]
    Sample,
}

impl PointEstimate {
    fn quantity(self) -> Quantity {
        match self {
            PointEstimate::Mean => Quantity::Mean,
            PointEstimate::Sample => Quantity::Sample,
        }
    }
}

/// Uniform without replacement: the no-prediction baseline.
#[derive(Debug, Clone, Default)]
pub struct Uniform;

impl Acquisition for Uniform {
    fn name(&self) -> &str {
        "uniform"
    }
    fn needs(&self) -> Vec<Quantity> {
        Vec::new()
    }
    fn select(
        &mut self,
        c: &[u32],
        b: usize,
        _: &Scores,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<usize>> {
        Ok(index::sample(rng, c.len(), b).into_vec())
    }
}

/// The B candidates whose estimate is closest to γ* (MoPPS: Thompson draw, γ* = 0.5).
#[derive(Debug, Clone)]
pub struct Target {
    /// Target success rate γ*.
    pub gamma: f32,
    /// Estimate compared to γ*.
    pub estimate: PointEstimate,
}

impl Acquisition for Target {
    fn name(&self) -> &str {
        "target"
    }
    fn needs(&self) -> Vec<Quantity> {
        vec![self.estimate.quantity()]
    }
    fn select(
        &mut self,
        c: &[u32],
        b: usize,
        s: &Scores,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<usize>> {
        let x = s.get(self.estimate.quantity(), c.len())?;
        let g = self.gamma;
        Ok(smallest_b(c, b, rng.next_u64(), |i| (x[i] - g).abs()))
    }
}

/// Random B among candidates whose estimate lies in [low, high]; if fewer fall inside,
/// the rest are the candidates nearest the band.
#[derive(Debug, Clone)]
pub struct Band {
    /// Lower edge of the band.
    pub low: f32,
    /// Upper edge of the band.
    pub high: f32,
    /// Estimate tested against the band.
    pub estimate: PointEstimate,
}

impl Acquisition for Band {
    fn name(&self) -> &str {
        "band"
    }
    fn needs(&self) -> Vec<Quantity> {
        vec![self.estimate.quantity()]
    }
    fn select(
        &mut self,
        c: &[u32],
        b: usize,
        s: &Scores,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<usize>> {
        if self.low > self.high {
            return Err(SamplerError::InvalidConfig(format!(
                "band low {} > high {}",
                self.low, self.high
            )));
        }
        let x = s.get(self.estimate.quantity(), c.len())?;
        let seed = rng.next_u64();
        let (lo, hi) = (self.low, self.high);
        Ok(smallest_b(c, b, seed, |i| {
            let v = x[i];
            if (lo..=hi).contains(&v) {
                hash_unit(seed, c[i] as u64) - 1.0
            } else {
                (lo - v).max(v - hi)
            }
        }))
    }
}

/// Top B by p(1−p): the Bernoulli variance, largest at p = 0.5.
#[derive(Debug, Clone)]
pub struct TopVariance {
    /// Estimate p used in p(1−p).
    pub estimate: PointEstimate,
}

impl Acquisition for TopVariance {
    fn name(&self) -> &str {
        "variance"
    }
    fn needs(&self) -> Vec<Quantity> {
        vec![self.estimate.quantity()]
    }
    fn select(
        &mut self,
        c: &[u32],
        b: usize,
        s: &Scores,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<usize>> {
        let x = s.get(self.estimate.quantity(), c.len())?;
        Ok(smallest_b(c, b, rng.next_u64(), |i| -(x[i] * (1.0 - x[i]))))
    }
}

/// Top B by predicted P(0 < s < k): DPS's rule, and the oracle's.
#[derive(Debug, Clone, Default)]
pub struct TopPartial;

impl Acquisition for TopPartial {
    fn name(&self) -> &str {
        "partial"
    }
    fn needs(&self) -> Vec<Quantity> {
        vec![Quantity::Partial]
    }
    fn select(
        &mut self,
        c: &[u32],
        b: usize,
        s: &Scores,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<usize>> {
        let x = s.get(Quantity::Partial, c.len())?;
        Ok(smallest_b(c, b, rng.next_u64(), |i| -x[i]))
    }
}

/// CVaR tail: restrict to the hardest α-fraction of the pool by predicted mean (at least B
/// prompts), then draw B uniformly from that tail — trains on the worst cases for robustness.
#[derive(Debug, Clone)]
pub struct Cvar {
    /// Tail fraction α in (0, 1].
    pub alpha: f32,
}

impl Acquisition for Cvar {
    fn name(&self) -> &str {
        "cvar"
    }
    fn needs(&self) -> Vec<Quantity> {
        vec![Quantity::Mean]
    }
    fn select(
        &mut self,
        c: &[u32],
        b: usize,
        s: &Scores,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<usize>> {
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return Err(SamplerError::InvalidConfig(format!(
                "cvar alpha must be in (0, 1], got {}",
                self.alpha
            )));
        }
        let x = s.get(Quantity::Mean, c.len())?;
        let tail = ((self.alpha as f64 * c.len() as f64).ceil() as usize).clamp(b, c.len());
        let hardest = smallest_b(c, tail, rng.next_u64(), |i| x[i]);
        let pick = index::sample(rng, hardest.len(), b);
        Ok(pick.into_iter().map(|j| hardest[j]).collect())
    }
}

/// MPTS-style risk: top B by mean + κ·std of the predicted *failure* rate 1 − p
/// (optimism about risk: hard or uncertain prompts first).
#[derive(Debug, Clone)]
pub struct Risk {
    /// Weight κ of the uncertainty bonus.
    pub kappa: f32,
}

impl Acquisition for Risk {
    fn name(&self) -> &str {
        "risk"
    }
    fn needs(&self) -> Vec<Quantity> {
        vec![Quantity::Mean, Quantity::Std]
    }
    fn select(
        &mut self,
        c: &[u32],
        b: usize,
        s: &Scores,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<usize>> {
        let m = s.get(Quantity::Mean, c.len())?;
        let sd = s.get(Quantity::Std, c.len())?;
        let k = self.kappa;
        Ok(smallest_b(c, b, rng.next_u64(), |i| {
            -((1.0 - m[i]) + k * sd[i])
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn scores(mean: Vec<f32>) -> Scores {
        Scores {
            std: vec![0.1; mean.len()],
            sample: mean.clone(),
            partial: mean
                .iter()
                .map(|p| 1.0 - p.powi(4) - (1.0 - p).powi(4))
                .collect(),
            mean,
        }
    }

    fn sorted(mut v: Vec<usize>) -> Vec<usize> {
        v.sort();
        v
    }

    #[test]
    fn rules_pick_expected_prompts() {
        let ids: Vec<u32> = (0..6).collect();
        let s = scores(vec![0.0, 0.1, 0.45, 0.6, 0.95, 1.0]);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut t = Target {
            gamma: 0.5,
            estimate: PointEstimate::Mean,
        };
        assert_eq!(t.select(&ids, 2, &s, &mut rng).unwrap(), vec![2, 3]);
        let mut v = TopVariance {
            estimate: PointEstimate::Sample,
        };
        assert_eq!(sorted(v.select(&ids, 2, &s, &mut rng).unwrap()), vec![2, 3]);
        assert_eq!(
            sorted(TopPartial.select(&ids, 2, &s, &mut rng).unwrap()),
            vec![2, 3]
        );
        let mut band = Band {
            low: 0.05,
            high: 0.7,
            estimate: PointEstimate::Mean,
        };
        assert_eq!(
            sorted(band.select(&ids, 3, &s, &mut rng).unwrap()),
            vec![1, 2, 3]
        );
        // Only 3 in band: the 4th is the nearest outside (0.95 is 0.25 away, 0.0 is 0.05).
        assert_eq!(
            sorted(band.select(&ids, 4, &s, &mut rng).unwrap()),
            vec![0, 1, 2, 3]
        );
        let mut cvar = Cvar { alpha: 0.5 };
        assert_eq!(
            sorted(cvar.select(&ids, 3, &s, &mut rng).unwrap()),
            vec![0, 1, 2]
        );
        let mut risk = Risk { kappa: 1.0 };
        assert_eq!(risk.select(&ids, 1, &s, &mut rng).unwrap(), vec![0]);
        let u = Uniform.select(&ids, 4, &s, &mut rng).unwrap();
        assert_eq!(sorted(u.clone()).len(), 4);
        assert!(u.iter().all(|&p| p < 6));
    }

    #[test]
    fn missing_quantity_is_an_error() {
        let ids: Vec<u32> = (0..3).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let err = TopPartial.select(&ids, 1, &Scores::default(), &mut rng);
        assert!(err.is_err());
        let mut cvar = Cvar { alpha: 0.0 };
        assert!(cvar
            .select(&ids, 1, &scores(vec![0.1; 3]), &mut rng)
            .is_err());
    }
}
