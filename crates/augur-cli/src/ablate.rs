//! `augur ablate`: compare prompt samplers or SFT batch-selection methods side by side
//! (argument parsing only; the experiment and its report live in `augur-ablate`).
//!
//! - `--simulate`: samplers against the simulated learner, in seconds ([`augur_ablate::sim`]).
//! - otherwise: one real run per method × seed from a config ([`augur_ablate::RealAblation`]):
//!   `augur grpo` runs of samplers, or, for an `augur sft` config (one with a `[train]` or
//!   `[selection]` section), `augur sft` runs of selection methods.

use std::path::PathBuf;

use anyhow::{ensure, Context};
use augur_ablate::plan::{mode_of, SELECTIONS};
use augur_ablate::sim::{run_simulated_ablation, AblationConfig};
use augur_ablate::{AccuracySpec, Mode, RealAblation};

#[derive(clap::Args)]
pub struct Args {
    /// Run against the simulated learner (seconds) instead of an LLM.
    #[arg(long)]
    simulate: bool,
    /// Config (TOML) every run starts from: an `augur grpo` config (samplers are compared) or an
    /// `augur sft` config, one with a `[train]` or `[selection]` section (selection methods are
    /// compared). With `--simulate`: the simulated-ablation config (defaults when omitted).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Comma-separated method names: samplers (uniform, ds, hr, greso, mopps, dps, gps; default
    /// uniform,ds,mopps,dps) or, for an SFT config, selection methods (uniform, uds, maxloss,
    /// rho; default all four).
    #[arg(long, alias = "methods", value_delimiter = ',')]
    samplers: Option<Vec<String>>,
    /// Seeds per sampler; run k adds k to the config's data, rollout, LoRA and sampler seeds.
    #[arg(long, default_value_t = 3)]
    seeds: usize,
    /// Output folder: `runs/<sampler>-seed<k>/`, CSVs, Markdown table and plots.
    /// Default `runs/ablate` (`runs/ablate-sim` with `--simulate`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override a config value in every run, e.g. `--set algorithm.steps=20` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Accuracy whose rollouts-to-reach are compared. Default: the uniform run's final
    /// accuracy of the same seed (with `--simulate`: the sim config's `target_accuracy`).
    #[arg(long)]
    target_accuracy: Option<f64>,
    /// SFT: greedy held-out accuracy of each checkpoint on the first this many problems of the
    /// config's `[eval] file` (math answers, e.g. GSM8K's `#### n`); 0 turns it off.
    #[arg(long, default_value_t = 50)]
    eval_prompts: usize,
    /// SFT: new tokens per held-out problem for that accuracy.
    #[arg(long, default_value_t = 256)]
    eval_max_new_tokens: usize,
}

/// The methods compared when `--samplers` is not given.
fn default_methods(mode: Mode) -> Vec<String> {
    let names: &[&str] = match mode {
        Mode::Sft => SELECTIONS,
        Mode::Grpo | Mode::Simulated => &["uniform", "ds", "mopps", "dps"],
    };
    names.iter().map(|s| s.to_string()).collect()
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
    let methods = args
        .samplers
        .unwrap_or_else(|| default_methods(Mode::Simulated));
    let report = run_simulated_ablation(&cfg, &methods, args.seeds, &out)?;
    println!("{}", report.markdown);
    println!("wrote {}", out.display());
    Ok(())
}

fn real(args: Args) -> anyhow::Result<()> {
    let config = args.config.context(
        "--config: give the grpo or sft config every run starts from (or use --simulate)",
    )?;
    let methods = match args.samplers {
        Some(m) => m,
        None => default_methods(mode_of(&config)?),
    };
    let ablation = RealAblation {
        config,
        methods,
        seeds: args.seeds,
        out: args.out.unwrap_or_else(|| "runs/ablate".into()),
        sets: args.set,
        target_accuracy: args.target_accuracy,
        augur: std::env::current_exe().context("cannot locate the augur executable")?,
        accuracy: (args.eval_prompts > 0).then_some(AccuracySpec {
            prompts: args.eval_prompts,
            max_new_tokens: args.eval_max_new_tokens,
        }),
    };
    let report = ablation.run()?;
    println!("{}", report.markdown);
    eprintln!("wrote {}", ablation.out.display());
    Ok(())
}
