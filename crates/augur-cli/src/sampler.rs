//! `augur sampler --method M [--config X.toml] [--seed N] [--set key=value]...`: a prompt
//! sampler served over JSON Lines on stdin/stdout, for TRL/verl users and external simulators
//! (protocol: `docs/sampler-protocol.md`; client: `scripts/augur_sampler_client.py`).

use std::path::PathBuf;

use anyhow::Context;
use augur_sampler::{Method, SamplerConfig};

#[derive(clap::Args)]
pub struct Args {
    /// uniform, hr, greso, mopps, dps or gps (ds: serve `uniform` and use `filter` rounds).
    #[arg(long)]
    method: Option<Method>,
    /// TOML sampler config (`method`, `seed`, `group_size`, `[mopps]`, `[dps]`, ...).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed of the sampler's RNG (overrides the config's `seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Override a sampler config value, e.g. `--set dps.lambda=0.5` (repeatable; applied
    /// after the config file, `--method` and `--seed`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (text, origin) = match &args.config {
        Some(p) => (
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (String::new(), "sampler config".to_string()),
    };
    let mut overrides = Vec::new();
    if let Some(m) = args.method {
        overrides.push(format!("method=\"{}\"", method_name(m)));
    }
    if let Some(s) = args.seed {
        overrides.push(format!("seed={s}"));
    }
    overrides.extend(args.overrides);
    let cfg = SamplerConfig::from_toml_str(&text, &overrides).context(origin)?;
    let mut sampler = cfg.build()?;
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    augur_sampler::serve(stdin, stdout, &mut sampler)?;
    Ok(())
}

/// The config spelling of a method (its serde name).
fn method_name(m: Method) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
