//! JSON Lines sampler server on stdin/stdout (what `augur sampler --method M --seed S --set ...`
//! wraps), used by `scripts/test_augur_sampler_client.py`.
//! `cargo run --release -p augur-sampler --example sampler_server -- [METHOD] [SEED] [KEY=VALUE]...`

use augur_sampler::{serve, SamplerConfig};
use std::io::{stdin, stdout, BufWriter};

fn main() {
    let mut args = std::env::args().skip(1);
    let method = args.next().unwrap_or_else(|| "mopps".into());
    let seed = args.next().unwrap_or_else(|| "0".into());
    let mut overrides = vec![format!("method={method}"), format!("seed={seed}")];
    overrides.extend(args);
    let result = SamplerConfig::from_toml_str("", &overrides).and_then(|cfg| {
        let mut sampler = cfg.build()?;
        serve(
            stdin().lock(),
            BufWriter::new(stdout().lock()),
            &mut sampler,
        )
    });
    if let Err(e) = result {
        eprintln!("sampler_server: {e}");
        std::process::exit(1);
    }
}
