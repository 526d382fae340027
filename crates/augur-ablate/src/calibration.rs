//! What a predictive sampler knew, prompt by prompt: the calibration of its predicted success
//! rates against the observed ones, and how well it did on each prompt's first appearance
//! (where a per-prompt predictor only has its prior and GPS has its embedding model).
//!
//! Input is the per-prompt record the GRPO trainer logs each step (`prompt_ids`,
//! `prompt_successes` and, for predictive samplers, `sampler_predicted`).

use std::collections::{HashMap, HashSet};

/// One trained prompt of one step.
#[derive(Clone, Debug, PartialEq)]
pub struct PromptRecord {
    pub step: u64,
    pub id: u32,
    /// Completions judged correct, out of the group size.
    pub successes: u32,
    /// The sampler's predicted success rate before rollout (predictive samplers only).
    pub predicted: Option<f64>,
}

/// One bin of a calibration curve.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrationBin {
    /// Predictions in [lo, hi) (the last bin includes 1).
    pub lo: f64,
    pub hi: f64,
    pub count: usize,
    pub mean_predicted: f64,
    pub mean_observed: f64,
}

/// Predicted vs observed success rate in `bins` equal-width bins of the prediction; empty bins
/// are left out. `k` is the group size (observed rate = successes / k).
pub fn calibration(records: &[PromptRecord], k: u32, bins: usize) -> Vec<CalibrationBin> {
    let bins = bins.max(1);
    let mut acc = vec![(0usize, 0.0f64, 0.0f64); bins];
    for r in records {
        let Some(p) = r.predicted else { continue };
        let b = ((p.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        acc[b].0 += 1;
        acc[b].1 += p;
        acc[b].2 += r.successes as f64 / k.max(1) as f64;
    }
    acc.iter()
        .enumerate()
        .filter(|(_, a)| a.0 > 0)
        .map(|(i, &(n, sp, so))| CalibrationBin {
            lo: i as f64 / bins as f64,
            hi: (i + 1) as f64 / bins as f64,
            count: n,
            mean_predicted: sp / n as f64,
            mean_observed: so / n as f64,
        })
        .collect()
}

/// The records of each prompt's first appearance in the run (records in step order).
pub fn first_appearances(records: &[PromptRecord]) -> Vec<&PromptRecord> {
    let mut seen = HashSet::new();
    records.iter().filter(|r| seen.insert(r.id)).collect()
}

/// How a prompt's previous group in the run went, seen from its next pick: whether an outcome
/// persists is what a per-prompt predictor bets on. A prompt whose last group was mixed is the
/// one most likely to be informative again; one last solved k/k or 0/k is a bet that the
/// policy has moved since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LastOutcome {
    /// The prompt's first pick in the run.
    First,
    /// Last group: no completion right.
    Unsolved,
    /// Last group: some right, some wrong (informative).
    Mixed,
    /// Last group: every completion right.
    Solved,
}

impl LastOutcome {
    /// Every state, in table order.
    pub const ALL: [LastOutcome; 4] = [Self::First, Self::Unsolved, Self::Mixed, Self::Solved];

    fn of(successes: u32, k: u32) -> Self {
        match successes {
            0 => Self::Unsolved,
            s if s >= k => Self::Solved,
            _ => Self::Mixed,
        }
    }
}

/// Each record with the outcome of the same prompt's previous record (records in step order).
pub fn last_outcomes(records: &[PromptRecord], k: u32) -> Vec<(LastOutcome, &PromptRecord)> {
    let mut last: HashMap<u32, u32> = HashMap::new();
    records
        .iter()
        .map(|r| {
            let state = last
                .insert(r.id, r.successes)
                .map_or(LastOutcome::First, |s| LastOutcome::of(s, k));
            (state, r)
        })
        .collect()
}

/// Fraction of `records` whose group was informative (0 < successes < k).
pub fn effective_ratio(records: &[&PromptRecord], k: u32) -> Option<f64> {
    (!records.is_empty()).then(|| {
        records
            .iter()
            .filter(|r| r.successes > 0 && r.successes < k)
            .count() as f64
            / records.len() as f64
    })
}

/// Mean squared error of predicted vs observed rate over the records that carry a prediction.
pub fn brier(records: &[&PromptRecord], k: u32) -> Option<f64> {
    let v: Vec<f64> = records
        .iter()
        .filter_map(|r| {
            r.predicted
                .map(|p| (p - r.successes as f64 / k.max(1) as f64).powi(2))
        })
        .collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Spearman ρ of predicted vs observed success rate over the records that carry a prediction;
/// `None` with fewer than two, or when either side is constant (a per-prompt prior predicts
/// the same for every unseen prompt, so it has no ρ on first appearances).
pub fn spearman(records: &[&PromptRecord], k: u32) -> Option<f64> {
    let (pred, obs): (Vec<f64>, Vec<f64>) = records
        .iter()
        .filter_map(|r| {
            r.predicted
                .map(|p| (p, r.successes as f64 / k.max(1) as f64))
        })
        .unzip();
    augur_sampler::spearman(&pred, &obs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(step: u64, id: u32, s: u32, p: Option<f64>) -> PromptRecord {
        PromptRecord {
            step,
            id,
            successes: s,
            predicted: p,
        }
    }

    #[test]
    fn calibration_bins_average_by_prediction() {
        let r = [
            rec(1, 0, 0, Some(0.05)),
            rec(1, 1, 2, Some(0.15)),
            rec(2, 2, 4, Some(0.95)),
            rec(2, 3, 3, Some(1.0)),
            rec(2, 4, 1, None),
        ];
        let c = calibration(&r, 4, 2);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].count, 2);
        assert!((c[0].mean_predicted - 0.1).abs() < 1e-12);
        assert!((c[0].mean_observed - 0.25).abs() < 1e-12);
        assert_eq!(c[1].count, 2);
        assert!((c[1].mean_observed - 0.875).abs() < 1e-12);
        assert_eq!((c[1].lo, c[1].hi), (0.5, 1.0));
    }

    #[test]
    fn first_appearance_stats() {
        let r = [
            rec(1, 7, 0, Some(0.5)),
            rec(1, 8, 2, Some(0.5)),
            rec(2, 7, 1, Some(0.2)),
            rec(3, 9, 4, Some(1.0)),
        ];
        let f = first_appearances(&r);
        assert_eq!(f.iter().map(|r| r.id).collect::<Vec<_>>(), vec![7, 8, 9]);
        assert!((effective_ratio(&f, 4).unwrap() - 1.0 / 3.0).abs() < 1e-12);
        // (0.5-0)^2 + (0.5-0.5)^2 + (1-1)^2 over 3
        assert!((brier(&f, 4).unwrap() - 0.25 / 3.0).abs() < 1e-12);
        assert_eq!(effective_ratio(&[], 4), None);
    }

    #[test]
    fn each_pick_carries_its_prompts_previous_outcome() {
        let r = [
            rec(1, 7, 0, None),
            rec(1, 8, 2, None),
            rec(2, 7, 4, None),
            rec(3, 8, 1, None),
            rec(3, 7, 3, None),
            rec(4, 8, 4, None),
        ];
        let states: Vec<_> = last_outcomes(&r, 4)
            .into_iter()
            .map(|(s, p)| (s, p.step, p.id))
            .collect();
        use LastOutcome::*;
        assert_eq!(
            states,
            vec![
                (First, 1, 7),
                (First, 1, 8),
                (Unsolved, 2, 7),
                (Mixed, 3, 8),
                (Solved, 3, 7),
                (Mixed, 4, 8),
            ]
        );
    }

    #[test]
    fn spearman_of_predictions_against_observed_rates() {
        // Predictions rank (1, 2, 3, -), observed 0, 2, 1 (of 4): ranks (1, 3, 2); d² = 0+1+1
        // → ρ = 1 − 6·2/(3·8) = 0.5. The record without a prediction is left out.
        let r = [
            rec(1, 0, 0, Some(0.1)),
            rec(1, 1, 2, Some(0.2)),
            rec(1, 2, 1, Some(0.3)),
            rec(1, 3, 4, None),
        ];
        let all: Vec<_> = r.iter().collect();
        assert!((spearman(&all, 4).unwrap() - 0.5).abs() < 1e-12);
        // A constant prediction (a prior) has no ρ.
        let prior = [rec(1, 0, 0, Some(0.5)), rec(1, 1, 3, Some(0.5))];
        assert_eq!(spearman(&prior.iter().collect::<Vec<_>>(), 4), None);
    }
}
