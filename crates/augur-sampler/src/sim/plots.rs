//! The simulated ablation's plots: accuracy vs rollouts and effective ratio vs step, means over
//! seeds, drawn with the shared [`crate::plot`] writer.

use super::runner::RunResult;
use crate::error::Result;
use crate::plot::{mean_curve, trailing_mean, write_line_plot, Series};
use std::path::Path;

/// Writes `accuracy_vs_rollouts.{png,svg}` and `effective_ratio.{png,svg}` (means over seeds;
/// effective ratio smoothed over 5 steps).
pub fn write_plots(runs: &[RunResult], methods: &[String], out: &Path) -> Result<()> {
    let mut acc = Vec::new();
    let mut eff = Vec::new();
    for m in methods {
        let rs: Vec<&RunResult> = runs.iter().filter(|r| &r.method == m).collect();
        if rs.is_empty() {
            continue;
        }
        let curves: Vec<Vec<(f64, f64)>> = rs
            .iter()
            .map(|r| {
                std::iter::once((0.0, r.initial_accuracy))
                    .chain(
                        r.steps
                            .iter()
                            .map(|s| (s.rollouts_cumulative as f64, s.accuracy)),
                    )
                    .collect()
            })
            .collect();
        acc.push(Series {
            name: m.clone(),
            points: mean_curve(&curves),
        });
        let curves: Vec<Vec<(f64, f64)>> = rs
            .iter()
            .map(|r| {
                r.steps
                    .iter()
                    .map(|s| (s.step as f64, s.effective_ratio))
                    .collect()
            })
            .collect();
        eff.push(Series {
            name: m.clone(),
            points: trailing_mean(&mean_curve(&curves), 5),
        });
    }
    write_line_plot(
        out,
        "accuracy_vs_rollouts",
        "Accuracy vs rollouts",
        "rollouts",
        "accuracy",
        &acc,
    )?;
    write_line_plot(
        out,
        "effective_ratio",
        "Effective-prompt ratio vs step",
        "step",
        "fraction with 0<s<k",
        &eff,
    )
}
