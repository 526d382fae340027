//! `augur ablate --simulate --config X.toml --samplers uniform,ds,mopps,dps --seeds 3 --out DIR`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use augur_sampler::sim::{run_simulated_ablation, AblationConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Run against the simulated learner (seconds) instead of an LLM.
    #[arg(long)]
    simulate: bool,
    /// Ablation config (TOML); defaults are used when omitted.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Comma-separated sampler names.
    #[arg(long, value_delimiter = ',', default_value = "uniform,ds,mopps,dps")]
    samplers: Vec<String>,
    #[arg(long, default_value_t = 3)]
    seeds: usize,
    /// Output folder for CSV, Markdown table and plots.
    #[arg(long, default_value = "runs/ablate-sim")]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !args.simulate {
        bail!("only `augur ablate --simulate` is available so far; real-LLM ablation runs `augur grpo` once per sampler");
    }
    let cfg = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            toml::from_str::<AblationConfig>(&text).with_context(|| format!("{}", p.display()))?
        }
        None => AblationConfig::default(),
    };
    let report = run_simulated_ablation(&cfg, &args.samplers, args.seeds, &args.out)?;
    println!("{}", report.markdown);
    println!("wrote {}", args.out.display());
    Ok(())
}
