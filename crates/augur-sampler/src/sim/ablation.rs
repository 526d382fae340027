//! The simulated ablation behind `augur ablate --simulate`: every method × seed on the
//! simulated learner, then a CSV of every step, a Markdown summary table and plots.

use super::learner::SimConfig;
use super::plots::write_plots;
use super::runner::{run_simulation, RunResult, RunSpec};
use crate::config::SamplerConfig;
use crate::error::{Result, SamplerError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Ablation config (TOML): the simulated learner plus optional per-method sampler configs.
///
/// ```toml
/// seeds = 3
/// [sim]
/// num_prompts = 2048
/// [samplers.mopps]
/// method = "mopps"
/// mopps = { lambda = 0.5 }
/// [samplers.dps_risk]        # any name, any predictor/acquisition pair
/// method = "dps"
/// acquisition = { kind = "risk", kappa = 0.5 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AblationConfig {
    /// Simulated learner and run length.
    pub sim: SimConfig,
    /// Sampler configs by name; names not listed use the named method's defaults.
    pub samplers: BTreeMap<String, SamplerConfig>,
    /// Seed of the first run; run j uses `base_seed + j`.
    pub base_seed: u64,
}

/// Averages over seeds of one method.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodSummary {
    /// Method name.
    pub method: String,
    /// Mean final accuracy.
    pub final_accuracy: f64,
    /// Mean rollouts spent over the run.
    pub total_rollouts: f64,
    /// Mean rollouts to reach the target accuracy; `None` unless every seed reached it.
    pub rollouts_to_target: Option<f64>,
    /// `rollouts_to_target` divided by uniform's.
    pub ratio_vs_uniform: Option<f64>,
    /// Seeds that reached the target.
    pub seeds_reached: usize,
    /// Mean effective-prompt ratio over all steps.
    pub effective_ratio: f64,
    /// Mean Spearman ρ after warm-up (`None` for methods without predictions).
    pub spearman: Option<f64>,
    /// Mean Brier score after warm-up.
    pub brier: Option<f64>,
    /// Mean rollouts per step.
    pub rollouts_per_step: f64,
    /// Mean wall time of a run, seconds.
    pub wall_s: f64,
}

/// Everything the ablation produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AblationReport {
    /// Per-method averages, in the requested order.
    pub summaries: Vec<MethodSummary>,
    /// Every run.
    pub runs: Vec<RunResult>,
    /// Target accuracy per seed.
    pub targets: Vec<Option<f64>>,
    /// The Markdown table also written to `summary.md`.
    pub markdown: String,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn spec_for(cfg: &AblationConfig, name: &str) -> Result<RunSpec> {
    match cfg.samplers.get(name) {
        Some(c) => Ok(RunSpec::Sampler(Box::new(c.clone()))),
        None => RunSpec::from_name(name),
    }
}

/// Runs every method for `seeds` seeds and returns the report, without writing files.
pub fn run_ablation(
    cfg: &AblationConfig,
    methods: &[String],
    seeds: usize,
) -> Result<AblationReport> {
    cfg.sim.validate()?;
    if methods.is_empty() || seeds == 0 {
        return Err(SamplerError::InvalidArgument(
            "need at least one method and one seed".into(),
        ));
    }
    let specs: Vec<RunSpec> = methods
        .iter()
        .map(|m| spec_for(cfg, m))
        .collect::<Result<_>>()?;
    let mut runs = Vec::new();
    for (name, spec) in methods.iter().zip(&specs) {
        for j in 0..seeds {
            runs.push(run_simulation(
                &cfg.sim,
                name,
                spec,
                cfg.base_seed + j as u64,
            )?);
        }
    }
    let by = |m: &str| -> Vec<&RunResult> { runs.iter().filter(|r| r.method == m).collect() };
    let uniform = methods
        .iter()
        .find(|m| m.eq_ignore_ascii_case("uniform"))
        .map(|m| by(m));
    let targets: Vec<Option<f64>> = (0..seeds)
        .map(|j| {
            cfg.sim
                .target_accuracy
                .or(uniform.as_ref().map(|u| u[j].final_accuracy()))
        })
        .collect();
    let warm = cfg.sim.warmup_steps;
    let to_target = |rs: &[&RunResult]| -> (Option<f64>, usize) {
        let v: Vec<f64> = rs
            .iter()
            .zip(&targets)
            .filter_map(|(r, t)| t.and_then(|t| r.rollouts_to(t)).map(|x| x as f64))
            .collect();
        let n = v.len();
        ((n == rs.len()).then(|| mean(&v)), n)
    };
    let uniform_to = uniform.as_ref().and_then(|u| to_target(u).0);
    let summaries = methods
        .iter()
        .map(|m| {
            let rs = by(m);
            let (rt, reached) = to_target(&rs);
            let opt_mean = |f: &dyn Fn(&RunResult) -> Option<f64>| {
                let v: Vec<f64> = rs.iter().filter_map(|r| f(r)).collect();
                (!v.is_empty()).then(|| mean(&v))
            };
            MethodSummary {
                method: m.clone(),
                final_accuracy: mean(&rs.iter().map(|r| r.final_accuracy()).collect::<Vec<_>>()),
                total_rollouts: mean(
                    &rs.iter()
                        .map(|r| r.total_rollouts() as f64)
                        .collect::<Vec<_>>(),
                ),
                rollouts_to_target: rt,
                ratio_vs_uniform: rt.zip(uniform_to).map(|(a, u)| a / u),
                seeds_reached: reached,
                effective_ratio: opt_mean(&|r| r.mean_after(0, |s| Some(s.effective_ratio)))
                    .unwrap_or(0.0),
                spearman: opt_mean(&|r| r.mean_after(warm, |s| s.spearman)),
                brier: opt_mean(&|r| r.mean_after(warm, |s| s.brier)),
                rollouts_per_step: mean(
                    &rs.iter()
                        .map(|r| r.total_rollouts() as f64 / r.steps.len() as f64)
                        .collect::<Vec<_>>(),
                ),
                wall_s: mean(&rs.iter().map(|r| r.wall_s).collect::<Vec<_>>()),
            }
        })
        .collect::<Vec<_>>();
    let markdown = markdown_table(&summaries, &targets, seeds);
    Ok(AblationReport {
        summaries,
        runs,
        targets,
        markdown,
    })
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.digits$}"))
}

/// The summary as a Markdown table.
pub fn markdown_table(s: &[MethodSummary], targets: &[Option<f64>], seeds: usize) -> String {
    let mut md = String::new();
    let t: Vec<String> = targets.iter().map(|t| opt(*t, 4)).collect();
    let _ = writeln!(
        md,
        "Simulated ablation, {seeds} seed(s); target accuracy per seed: {}\n",
        t.join(", ")
    );
    md.push_str("| method | final acc | rollouts | rollouts/step | rollouts to target | × uniform | effective ratio | Spearman ρ | Brier | wall s |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    for m in s {
        let _ = writeln!(
            md,
            "| {} | {:.4} | {:.0} | {:.0} | {} | {} | {:.3} | {} | {} | {:.3} |",
            m.method,
            m.final_accuracy,
            m.total_rollouts,
            m.rollouts_per_step,
            m.rollouts_to_target.map_or(
                format!("not reached ({}/{seeds})", m.seeds_reached),
                |x| format!("{x:.0}")
            ),
            opt(m.ratio_vs_uniform, 3),
            m.effective_ratio,
            opt(m.spearman, 3),
            opt(m.brier, 4),
            m.wall_s
        );
    }
    md
}

/// Per-step CSV of every run.
pub fn runs_csv(runs: &[RunResult]) -> String {
    let mut csv = String::from(
        "method,seed,step,rollouts_cumulative,accuracy,effective_ratio,spearman,brier,update_us,select_us\n",
    );
    for r in runs {
        for s in &r.steps {
            let _ = writeln!(
                csv,
                "{},{},{},{},{:.6},{:.6},{},{},{},{}",
                r.method,
                r.seed,
                s.step,
                s.rollouts_cumulative,
                s.accuracy,
                s.effective_ratio,
                s.spearman.map_or(String::new(), |x| format!("{x:.6}")),
                s.brier.map_or(String::new(), |x| format!("{x:.6}")),
                s.update_us,
                s.select_us
            );
        }
    }
    csv
}

/// Runs the ablation and writes `runs.csv`, `summary.md`, `summary.json` and the plots
/// (`accuracy_vs_rollouts.{png,svg}`, `effective_ratio.{png,svg}`) into `out_dir`.
/// This is the library side of `augur ablate --simulate --config X.toml --samplers ... --seeds N --out DIR`.
pub fn run_simulated_ablation(
    cfg: &AblationConfig,
    methods: &[String],
    seeds: usize,
    out_dir: &Path,
) -> Result<AblationReport> {
    let report = run_ablation(cfg, methods, seeds)?;
    std::fs::create_dir_all(out_dir).map_err(|e| SamplerError::io(out_dir, e))?;
    let write = |name: &str, text: &str| {
        let p = out_dir.join(name);
        std::fs::write(&p, text).map_err(|e| SamplerError::io(&p, e))
    };
    write("runs.csv", &runs_csv(&report.runs))?;
    write("summary.md", &report.markdown)?;
    write(
        "summary.json",
        &serde_json::to_string_pretty(&report.summaries)?,
    )?;
    write_plots(&report.runs, methods, out_dir)?;
    Ok(report)
}
