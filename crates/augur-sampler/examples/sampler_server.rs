//! JSON Lines sampler server on stdin/stdout (what `augur sampler --method M` wraps), used by
//! `scripts/test_augur_sampler_client.py`.
//! `cargo run --release -p augur-sampler --example sampler_server -- [METHOD] [SEED]`

use augur_sampler::{serve, SamplerConfig};
use std::io::{stdin, stdout, BufWriter};

fn main() {
    let mut args = std::env::args().skip(1);
    let method = args.next().unwrap_or_else(|| "mopps".into());
    let seed = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let result = method.parse().and_then(|m| {
        let cfg = SamplerConfig {
            seed,
            ..SamplerConfig::for_method(m)
        };
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
