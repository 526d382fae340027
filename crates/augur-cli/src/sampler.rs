//! `augur sampler --method M [--config X.toml]`: a prompt sampler served over
//! JSON Lines on stdin/stdout, for TRL/verl users and external simulators
//! (protocol: `augur_sampler::protocol`; client: `scripts/augur_sampler_client.py`).

use std::path::PathBuf;

use anyhow::Context;
use augur_sampler::{Method, SamplerConfig};

#[derive(clap::Args)]
pub struct Args {
    /// uniform, hr, greso, mopps or dps (ds needs rollouts and is not servable).
    #[arg(long)]
    method: Option<Method>,
    /// TOML sampler config (`method`, `seed`, `group_size`, `[mopps]`, `[dps]`, ...).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut cfg = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            toml::from_str::<SamplerConfig>(&text).with_context(|| format!("{}", p.display()))?
        }
        None => SamplerConfig::for_method(args.method.unwrap_or_default()),
    };
    if let (Some(m), Some(_)) = (args.method, &args.config) {
        cfg.method = m;
    }
    let mut sampler = cfg.build()?;
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    augur_sampler::serve(stdin, stdout, &mut sampler)?;
    Ok(())
}
