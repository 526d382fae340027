//! The simulated ablation behind `augur ablate --simulate`: every method × seed on the simulated
//! learner of `augur_sampler::sim`, reported like every other mode.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{ensure, Context};
use augur_sampler::sim::{run_simulation, RunResult, RunSpec, SimConfig};
use augur_sampler::SamplerConfig;
use serde::{Deserialize, Serialize};

use crate::report::{Report, ReportSpec};
use crate::run::{Mode, Run, StepRow};

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

fn spec_for(cfg: &AblationConfig, name: &str) -> anyhow::Result<RunSpec> {
    Ok(match cfg.samplers.get(name) {
        Some(c) => RunSpec::Sampler(Box::new(c.clone())),
        None => RunSpec::from_name(name)?,
    })
}

/// A simulated run as the report reads runs: a step-0 row with the initial accuracy, then a
/// row per step whose `eval_accuracy` is the policy's expected accuracy over every prompt.
fn to_run(r: &RunResult, seed_index: u64, group_size: u32) -> Run {
    let start = StepRow {
        rollouts: Some(0),
        eval_accuracy: Some(r.initial_accuracy),
        ..Default::default()
    };
    let steps = r.steps.iter().map(|s| StepRow {
        step: s.step as u64,
        trained: true,
        rollouts: Some(s.rollouts_cumulative),
        eval_accuracy: Some(s.accuracy),
        effective_ratio: Some(s.effective_ratio),
        spearman: s.spearman,
        brier: s.brier,
        time_step_s: Some(s.time_step_s),
        ..Default::default()
    });
    Run {
        mode: Mode::Simulated,
        method: r.method.clone(),
        seed: seed_index,
        dir: String::new(),
        rows: std::iter::once(start).chain(steps).collect(),
        group_size,
        holdout: None,
    }
}

/// Runs every method for `seeds` seeds and returns the report, without writing files.
pub fn run_ablation(
    cfg: &AblationConfig,
    methods: &[String],
    seeds: usize,
) -> anyhow::Result<Report> {
    cfg.sim.validate()?;
    ensure!(
        !methods.is_empty() && seeds > 0,
        "need at least one method and one seed"
    );
    let specs: Vec<RunSpec> = methods
        .iter()
        .map(|m| spec_for(cfg, m))
        .collect::<anyhow::Result<_>>()?;
    let mut runs = Vec::new();
    for (name, spec) in methods.iter().zip(&specs) {
        for j in 0..seeds as u64 {
            let r = run_simulation(&cfg.sim, name, spec, cfg.base_seed + j)
                .with_context(|| format!("{name} seed {j}"))?;
            runs.push(to_run(&r, j, cfg.sim.group_size));
        }
    }
    let spec = ReportSpec {
        title: "the simulated learner",
        mode: Mode::Simulated,
        methods,
        seeds,
        target: cfg.sim.target_accuracy,
        warmup: cfg.sim.warmup_steps as u64,
    };
    Ok(Report::new(&spec, runs))
}

/// Runs the ablation and writes its report ([`Report::write`]) into `out_dir`: the library
/// side of `augur ablate --simulate [--config X.toml] --samplers ... --seeds N --out DIR`.
pub fn run_simulated_ablation(
    cfg: &AblationConfig,
    methods: &[String],
    seeds: usize,
    out_dir: &Path,
) -> anyhow::Result<Report> {
    let report = run_ablation(cfg, methods, seeds)?;
    report.write(out_dir)?;
    Ok(report)
}
