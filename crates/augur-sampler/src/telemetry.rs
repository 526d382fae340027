//! Per-step sampler telemetry: rollouts spent, effective-prompt ratio, and how well the
//! predictions matched what the rollouts then showed (Spearman ρ, Brier score).

use serde::{Deserialize, Serialize};

/// One step's numbers, as logged into the run's metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTelemetry {
    /// 1-based step counter of the sampler.
    pub step: u64,
    /// Rollouts spent this step (for DS, every round's rollouts).
    pub rollouts: u64,
    /// Rollouts spent since the start of training.
    pub rollouts_cumulative: u64,
    /// Fraction of rolled-out groups with 0 < s < k (non-zero GRPO advantage).
    pub effective_ratio: f64,
    /// Spearman rank correlation of predicted vs observed success rates of the selected
    /// prompts; `None` when undefined (fewer than 2 prompts, or a constant side).
    pub spearman: Option<f64>,
    /// Mean squared error of predicted vs observed success rate; `None` without predictions.
    pub brier: Option<f64>,
    /// Wall time of the predictor + acquisition update in `observe`, microseconds.
    pub update_us: u64,
    /// Wall time of the last `select`, microseconds.
    pub select_us: u64,
}

/// Average ranks (1-based), ties sharing the mean of their positions.
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Spearman ρ with tie correction (Pearson correlation of average ranks).
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 {
        return None;
    }
    pearson(&ranks(x), &ranks(y))
}

/// Brier score: mean of (predicted − observed)².
pub fn brier(pred: &[f64], obs: &[f64]) -> Option<f64> {
    if pred.is_empty() || pred.len() != obs.len() {
        return None;
    }
    Some(
        pred.iter()
            .zip(obs)
            .map(|(p, o)| (p - o) * (p - o))
            .sum::<f64>()
            / pred.len() as f64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_correlations() {
        assert_eq!(ranks(&[10.0, 20.0, 20.0, 5.0]), vec![2.0, 3.5, 3.5, 1.0]);
        assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
        // x ranks 1..4, y ranks (1,3,2,4): d² = 0+1+1+0 = 2 → ρ = 1 − 6·2/(4·15) = 0.8.
        assert!(
            (spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]).unwrap() - 0.8).abs() < 1e-12
        );
        assert_eq!(spearman(&[1.0, 1.0], &[0.0, 1.0]), None);
        assert_eq!(spearman(&[1.0], &[1.0]), None);
        assert!((brier(&[0.5, 1.0], &[0.0, 1.0]).unwrap() - 0.125).abs() < 1e-12);
        assert_eq!(brier(&[], &[]), None);
    }
}
