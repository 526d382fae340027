//! `augur ablate`: compare prompt samplers side by side.
//!
//! - `--simulate`: against the simulated learner, in seconds (`augur_sampler::sim`).
//! - otherwise: one real `augur grpo` run per sampler × seed from a GRPO config ([`plan`]),
//!   run one after another as child processes, resumably ([`exec`]); then each run's
//!   `metrics.jsonl` ([`metrics`]) is summarised into CSVs, a Markdown table and plots
//!   ([`report`]).

mod calibration;
mod exec;
mod metrics;
mod plan;
mod report;

use std::path::PathBuf;

use anyhow::{ensure, Context};
use augur_sampler::sim::{run_simulated_ablation, AblationConfig};

use exec::RunState;
use metrics::RunMetrics;
use plan::Plan;
use report::Report;

#[derive(clap::Args)]
pub struct Args {
    /// Run against the simulated learner (seconds) instead of an LLM.
    #[arg(long)]
    simulate: bool,
    /// GRPO config (TOML) every run starts from, as for `augur grpo`. With `--simulate`: the
    /// simulated-ablation config (defaults when omitted).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Comma-separated sampler names (uniform, ds, hr, greso, mopps, dps, gps).
    #[arg(long, value_delimiter = ',', default_value = "uniform,ds,mopps,dps")]
    samplers: Vec<String>,
    /// Seeds per sampler; run k adds k to the config's data, rollout, LoRA and sampler seeds.
    #[arg(long, default_value_t = 3)]
    seeds: usize,
    /// Output folder: `runs/<sampler>-seed<k>/`, CSVs, Markdown table and plots.
    /// Default `runs/ablate` (`runs/ablate-sim` with `--simulate`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override a GRPO config value in every run, e.g. `--set algorithm.steps=20` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Accuracy whose rollouts-to-reach are compared. Default: the uniform run's final
    /// accuracy of the same seed (with `--simulate`: the sim config's `target_accuracy`).
    #[arg(long)]
    target_accuracy: Option<f64>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(t) = args.target_accuracy {
        ensure!(
            (0.0..=1.0).contains(&t),
            "--target-accuracy must be in [0, 1] (got {t})"
        );
    }
    if args.simulate {
        simulate(args)
    } else {
        real(args)
    }
}

fn simulate(args: Args) -> anyhow::Result<()> {
    ensure!(
        args.set.is_empty(),
        "--set overrides GRPO config values; it does not apply to --simulate"
    );
    let mut cfg = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            toml::from_str::<AblationConfig>(&text).with_context(|| format!("{}", p.display()))?
        }
        None => AblationConfig::default(),
    };
    if args.target_accuracy.is_some() {
        cfg.sim.target_accuracy = args.target_accuracy;
    }
    let out = args.out.unwrap_or_else(|| "runs/ablate-sim".into());
    let report = run_simulated_ablation(&cfg, &args.samplers, args.seeds, &out)?;
    println!("{}", report.markdown);
    println!("wrote {}", out.display());
    Ok(())
}

fn real(args: Args) -> anyhow::Result<()> {
    let config = args
        .config
        .context("--config: give the GRPO config every run starts from (or use --simulate)")?;
    let out = args.out.unwrap_or_else(|| "runs/ablate".into());
    let plan = Plan::new(&config, &args.samplers, args.seeds, &out, &args.set)?;
    run_all(&plan)?;
    let runs = plan
        .runs
        .iter()
        .map(RunMetrics::read)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let title = format!("`{}`", plan.config_path.display());
    let report = Report::new(
        &title,
        &plan.samplers,
        plan.seeds,
        runs,
        args.target_accuracy,
    );
    report.write(&out)?;
    println!("{}", report.markdown);
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// Every planned run in turn, skipping finished ones and resuming interrupted ones. Every run
/// folder is inspected first, so a folder that cannot be reused fails before any run starts.
fn run_all(plan: &Plan) -> anyhow::Result<()> {
    let states = plan
        .runs
        .iter()
        .map(exec::run_state)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let n = plan.runs.len();
    for (i, (run, state)) in plan.runs.iter().zip(&states).enumerate() {
        let what = match state {
            RunState::Complete => {
                eprintln!(
                    "ablate [{}/{n}] skip {}: {} already has all {} steps",
                    i + 1,
                    run.label(),
                    run.dir.display(),
                    run.steps()
                );
                continue;
            }
            RunState::Resume(ckpt) => format!("resuming from {}", ckpt.display()),
            RunState::Fresh => format!("starting in {}", run.dir.display()),
        };
        eprintln!("ablate [{}/{n}] {}: {what}", i + 1, run.label());
        exec::execute(run, &plan.config_path, state)?;
    }
    Ok(())
}
