//! The simulated ablation's plots: accuracy vs rollouts and effective ratio vs step, means over
//! seeds, drawn with the shared [`crate::plot`] writer.

use super::runner::RunResult;
use crate::error::Result;
use crate::plot::{write_ablation_plots, SamplerCurves};
use std::path::Path;

/// Writes the two ablation plots ([`write_ablation_plots`]) of the simulated runs.
pub fn write_plots(runs: &[RunResult], methods: &[String], out: &Path) -> Result<()> {
    let samplers: Vec<SamplerCurves> = methods
        .iter()
        .filter_map(|m| {
            let rs: Vec<&RunResult> = runs.iter().filter(|r| &r.method == m).collect();
            (!rs.is_empty()).then(|| SamplerCurves {
                name: m.clone(),
                accuracy: rs
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
                    .collect(),
                effective: rs
                    .iter()
                    .map(|r| {
                        r.steps
                            .iter()
                            .map(|s| (s.step as f64, s.effective_ratio))
                            .collect()
                    })
                    .collect(),
            })
        })
        .collect();
    write_ablation_plots(out, &samplers)
}
