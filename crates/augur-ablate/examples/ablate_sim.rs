//! Runs the simulated ablation from the command line (what `augur ablate --simulate` wraps):
//! `cargo run --release -p augur-ablate --example ablate_sim -- [CONFIG.toml] [METHODS] [SEEDS] [OUT]`
//! e.g. `... -- "" uniform,ds,mopps,dps,oracle 3 /tmp/ablate`.

use augur_ablate::sim::{run_simulated_ablation, AblationConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg: AblationConfig = match args.first().filter(|p| !p.is_empty()) {
        Some(p) => {
            let text = std::fs::read_to_string(p).unwrap_or_else(|e| fail(&format!("{p}: {e}")));
            toml::from_str(&text).unwrap_or_else(|e| fail(&format!("{p}: {e}")))
        }
        None => AblationConfig::default(),
    };
    let methods: Vec<String> = args
        .get(1)
        .map_or("uniform,ds,hr,greso,mopps,dps,oracle", |s| s.as_str())
        .split(',')
        .map(str::to_string)
        .collect();
    let seeds = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let out = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| "target/ablate_sim".into());
    match run_simulated_ablation(&cfg, &methods, seeds, out.as_ref()) {
        Ok(r) => println!("{}\nwritten to {out}", r.markdown),
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1)
}
