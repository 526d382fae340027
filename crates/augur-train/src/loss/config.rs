//! Options of the policy loss (see the parent module for the definitions they select).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How per-token losses become one scalar.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossAggregation {
    /// Mean over tokens of each completion, then mean over completions (GRPO).
    #[default]
    SeqMeanTokenMean,
    /// Mean over all valid tokens of the batch (DAPO).
    TokenMean,
    /// Sum over tokens divided by `max_response_len`, then mean over completions (Dr. GRPO).
    SeqMeanTokenSumNorm,
}

/// Where the importance ratio is computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RatioLevel {
    /// One ratio per token (PPO, GRPO, DAPO).
    #[default]
    Token,
    /// One length-normalised ratio per completion (GSPO).
    Sequence,
}

/// Estimator of `KL(policy || reference)` from sampled tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KlEstimator {
    /// `logp - ref`: unbiased, high variance, can be negative.
    K1,
    /// `(logp - ref)^2 / 2`: low variance, biased.
    K2,
    /// `exp(ref - logp) - (ref - logp) - 1`: unbiased, low variance, non-negative (`low_var_kl`).
    #[default]
    K3,
}

/// Policy-loss options, as they appear in the `[algorithm]` TOML table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyLossConfig {
    /// Lower clip range: ratios below `1 - eps_low` stop pushing down. Default 0.2.
    pub eps_low: f64,
    /// Upper clip range: ratios above `1 + eps_high` stop pushing up. Default 0.2 (DAPO: 0.28).
    pub eps_high: f64,
    /// Loss aggregation. Default `seq-mean-token-mean`.
    pub aggregation: LossAggregation,
    /// Constant normaliser of `seq-mean-token-sum-norm` (use the generation length limit).
    /// Default unset; required by that mode.
    pub max_response_len: Option<usize>,
    /// Importance ratio per token or per sequence (GSPO). Default `token`.
    pub ratio: RatioLevel,
    /// KL coefficient. Default 0: no KL term and no reference log-probabilities needed.
    pub beta: f64,
    /// KL estimator. Default `k3`.
    pub kl_estimator: KlEstimator,
    /// Entropy bonus coefficient (the loss subtracts `entropy_coef * H`). Default 0.
    pub entropy_coef: f64,
    /// Drop completions that hit the length limit from the loss (DAPO overlong filtering).
    /// Default false.
    pub mask_truncated: bool,
}

impl Default for PolicyLossConfig {
    fn default() -> Self {
        Self {
            eps_low: 0.2,
            eps_high: 0.2,
            aggregation: LossAggregation::SeqMeanTokenMean,
            max_response_len: None,
            ratio: RatioLevel::Token,
            beta: 0.0,
            kl_estimator: KlEstimator::K3,
            entropy_coef: 0.0,
            mask_truncated: false,
        }
    }
}

impl PolicyLossConfig {
    /// Checks ranges: `0 <= eps_low < 1`, `eps_high >= 0`, `beta >= 0`, finite coefficients, and a
    /// positive `max_response_len` when the aggregation needs it.
    pub fn validate(&self) -> Result<()> {
        if !(self.eps_low.is_finite() && (0.0..1.0).contains(&self.eps_low)) {
            return Err(Error::Invalid(format!(
                "eps_low must be in [0, 1), got {}",
                self.eps_low
            )));
        }
        if !(self.eps_high.is_finite() && self.eps_high >= 0.0) {
            return Err(Error::Invalid(format!(
                "eps_high must be >= 0, got {}",
                self.eps_high
            )));
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return Err(Error::Invalid(format!(
                "beta must be >= 0, got {}",
                self.beta
            )));
        }
        if !self.entropy_coef.is_finite() {
            return Err(Error::Invalid(format!(
                "entropy_coef must be finite, got {}",
                self.entropy_coef
            )));
        }
        if self.aggregation == LossAggregation::SeqMeanTokenSumNorm
            && self.max_response_len.unwrap_or(0) == 0
        {
            return Err(Error::Invalid(
                "aggregation seq-mean-token-sum-norm needs max_response_len > 0".into(),
            ));
        }
        Ok(())
    }
}
