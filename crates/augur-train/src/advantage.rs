//! Group-relative advantages: the baseline of GRPO is the mean reward of the other completions of
//! the same prompt, so no value network is needed.
//!
//! Rewards arrive flat, prompt-major: `rewards[g * G + i]` is completion `i` of prompt `g`.
//!
//! Definitions (differences between frameworks noted):
//! - `group-std` (GRPO, default): `A = (r - mean_g) / (std_g + eps)`.
//! - `none` (Dr. GRPO): `A = r - mean_g`. Dividing by the group std up-weights prompts that are
//!   almost always solved or almost always failed; Dr. GRPO drops it.
//! - `batch-std`: `A = (r - mean_g) / (std_batch + eps)` — the group mean as baseline, one scale for
//!   the whole batch (TRL's `scale_rewards = "batch"`), which keeps the relative weight of prompts.
//!
//! The std is the unbiased (sample, `n - 1`) one by default, as `torch.std` in TRL and verl;
//! `unbiased_std = false` gives the population std. A group of one has no spread: its std is
//! defined as 0 and its advantage is therefore 0 under every mode (verl instead forces mean 0 and
//! std 1 there, giving the raw reward; a singleton group carries no *relative* signal, so we give none).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How group-centred rewards are scaled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdvantageScale {
    /// Divide by the group's std (GRPO).
    #[default]
    GroupStd,
    /// Divide by the std of all rewards in the batch.
    BatchStd,
    /// Do not scale (Dr. GRPO).
    None,
}

/// Advantage options, as they appear in the `[algorithm]` TOML table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdvantageConfig {
    /// Scaling of `r - mean_group`. Default `group-std`.
    pub scale: AdvantageScale,
    /// Added to the std before dividing. Default `1e-4` (TRL; verl uses `1e-6`).
    pub eps: f64,
    /// Use the unbiased (`n - 1`) std. Default `true` (TRL and verl both call `torch.std`).
    pub unbiased_std: bool,
}

impl Default for AdvantageConfig {
    fn default() -> Self {
        Self {
            scale: AdvantageScale::GroupStd,
            eps: 1e-4,
            unbiased_std: true,
        }
    }
}

fn check_groups(rewards: &[f32], group_size: usize) -> Result<()> {
    if group_size == 0 {
        return Err(Error::Invalid("group_size must be at least 1".into()));
    }
    if !rewards.len().is_multiple_of(group_size) {
        return Err(Error::Shape(format!(
            "{} rewards are not a whole number of groups of {group_size}",
            rewards.len()
        )));
    }
    if let Some(i) = rewards.iter().position(|r| !r.is_finite()) {
        return Err(Error::Invalid(format!(
            "reward {i} is not finite ({})",
            rewards[i]
        )));
    }
    Ok(())
}

/// Mean and std of `xs` in f64 (std as chosen by `unbiased`; 0 for fewer than two values).
fn mean_std(xs: &[f32], unbiased: bool) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / n;
    let ss = xs.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>();
    let denom = if unbiased { n - 1.0 } else { n };
    let std = if xs.len() < 2 {
        0.0
    } else {
        (ss / denom).sqrt()
    };
    (mean, std)
}

/// One advantage per reward (same order), from groups of `group_size` consecutive rewards.
///
/// Errors when `group_size` is 0, the length is not a multiple of it, a reward is not finite, or
/// `eps` is negative or not finite.
pub fn group_advantages(
    rewards: &[f32],
    group_size: usize,
    cfg: &AdvantageConfig,
) -> Result<Vec<f32>> {
    check_groups(rewards, group_size)?;
    if !(cfg.eps.is_finite() && cfg.eps >= 0.0) {
        return Err(Error::Invalid(format!(
            "advantage eps must be finite and >= 0, got {}",
            cfg.eps
        )));
    }
    let batch_std = mean_std(rewards, cfg.unbiased_std).1;
    let mut out = Vec::with_capacity(rewards.len());
    for group in rewards.chunks(group_size) {
        let (mean, group_std) = mean_std(group, cfg.unbiased_std);
        let denom = match cfg.scale {
            AdvantageScale::GroupStd => group_std + cfg.eps,
            AdvantageScale::BatchStd => batch_std + cfg.eps,
            AdvantageScale::None => 1.0,
        };
        for &r in group {
            let centred = r as f64 - mean;
            // A group with no spread has exactly-zero centred rewards; keep them 0 even with eps = 0.
            let a = if centred == 0.0 { 0.0 } else { centred / denom };
            out.push(a as f32);
        }
    }
    Ok(out)
}

/// Fraction of groups whose rewards are all identical (they give zero advantage, hence no gradient).
///
/// A high value means the batch is too easy or too hard; DAPO's dynamic sampling filters such groups.
/// Returns 0 for an empty reward list.
pub fn zero_variance_fraction(rewards: &[f32], group_size: usize) -> Result<f64> {
    check_groups(rewards, group_size)?;
    if rewards.is_empty() {
        return Ok(0.0);
    }
    let groups = rewards.len() / group_size;
    let flat = rewards
        .chunks(group_size)
        .filter(|g| g.iter().all(|&r| r == g[0]))
        .count();
    Ok(flat as f64 / groups as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((*x as f64 - y).abs() < tol, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn grpo_unbiased_by_hand() {
        // group [1, 0, 0, 1]: mean 0.5, unbiased var = 4*0.25/3 = 1/3, std = 0.57735
        // group [1, 1, 1, 0]: mean 0.75, ss = 3*0.0625 + 0.5625 = 0.75, var = 0.25, std = 0.5
        let r = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0];
        let cfg = AdvantageConfig {
            eps: 0.0,
            ..Default::default()
        };
        let a = group_advantages(&r, 4, &cfg).unwrap();
        let s = (1.0f64 / 3.0).sqrt();
        close(
            &a,
            &[0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s, 0.5, 0.5, 0.5, -1.5],
            1e-6,
        );
    }

    #[test]
    fn population_std_and_eps() {
        // [2, 4]: mean 3, population std 1 → (±1)/(1 + 0.5)
        let cfg = AdvantageConfig {
            unbiased_std: false,
            eps: 0.5,
            ..Default::default()
        };
        let a = group_advantages(&[2.0, 4.0], 2, &cfg).unwrap();
        close(&a, &[-1.0 / 1.5, 1.0 / 1.5], 1e-7);
    }

    #[test]
    fn dr_grpo_mean_only() {
        let cfg = AdvantageConfig {
            scale: AdvantageScale::None,
            ..Default::default()
        };
        let a = group_advantages(&[1.0, 0.0, 0.0, 3.0, 3.0, 3.0], 3, &cfg).unwrap();
        close(
            &a,
            &[2.0 / 3.0, -1.0 / 3.0, -1.0 / 3.0, 0.0, 0.0, 0.0],
            1e-7,
        );
    }

    #[test]
    fn batch_std() {
        // rewards [0, 1, 2, 3]: group means 0.5, 2.5; batch unbiased std = sqrt(5/3)
        let cfg = AdvantageConfig {
            scale: AdvantageScale::BatchStd,
            eps: 0.0,
            unbiased_std: true,
        };
        let a = group_advantages(&[0.0, 1.0, 2.0, 3.0], 2, &cfg).unwrap();
        let s = (5.0f64 / 3.0).sqrt();
        close(&a, &[-0.5 / s, 0.5 / s, -0.5 / s, 0.5 / s], 1e-6);
    }

    #[test]
    fn flat_and_singleton_groups_are_zero() {
        let cfg = AdvantageConfig {
            eps: 0.0,
            ..Default::default()
        };
        let a = group_advantages(&[1.0, 1.0, 0.0, 0.0], 2, &cfg).unwrap();
        assert_eq!(a, vec![0.0; 4]);
        let a = group_advantages(&[0.3, 0.7], 1, &cfg).unwrap();
        assert_eq!(a, vec![0.0; 2]);
    }

    #[test]
    fn zero_variance() {
        let r = [1.0, 1.0, 0.0, 1.0, 0.0, 0.0];
        assert!((zero_variance_fraction(&r, 2).unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(zero_variance_fraction(&[], 4).unwrap(), 0.0);
    }

    #[test]
    fn bad_input_is_an_error() {
        let cfg = AdvantageConfig::default();
        assert!(matches!(
            group_advantages(&[1.0; 5], 2, &cfg),
            Err(Error::Shape(_))
        ));
        assert!(group_advantages(&[1.0; 4], 0, &cfg).is_err());
        assert!(group_advantages(&[1.0, f32::NAN], 2, &cfg).is_err());
        assert!(zero_variance_fraction(&[1.0; 3], 2).is_err());
    }

    #[test]
    fn config_from_toml() {
        let cfg: AdvantageConfig = toml::from_str("scale = \"none\"").unwrap();
        assert_eq!(cfg.scale, AdvantageScale::None);
        assert_eq!(cfg.eps, 1e-4);
        assert!(toml::from_str::<AdvantageConfig>("scael = \"none\"").is_err());
    }
}
