//! Config parsing from TOML (deny_unknown_fields) and the ablation's written outputs.

use augur_sampler::sim::{run_simulated_ablation, AblationConfig};
use augur_sampler::{AcquisitionConfig, Method, PredictorConfig, SamplerConfig};

#[test]
fn sampler_config_from_toml() {
    let c: SamplerConfig = toml::from_str(
        r#"
        method = "mopps"
        seed = 7
        [mopps]
        lambda = 0.5
        [acquisition]
        kind = "risk"
        kappa = 2.0
        "#,
    )
    .unwrap();
    assert_eq!(c.method, Method::Mopps);
    assert_eq!(c.acquisition, Some(AcquisitionConfig::Risk { kappa: 2.0 }));
    match c.predictor_config() {
        PredictorConfig::Beta(b) => assert_eq!(b.lambda, 0.5),
        p => panic!("unexpected {p:?}"),
    }
    assert_eq!(c.build().unwrap().name(), "beta+risk");
    assert!(toml::from_str::<SamplerConfig>("methd = \"dps\"").is_err());
    assert!(toml::from_str::<SamplerConfig>("[acquisition]\nkind = \"risk\"\nkapa = 1.0").is_err());
    assert!(
        toml::from_str::<SamplerConfig>("[predictor]\nkind = \"beta\"\nlambda = 2.0")
            .unwrap()
            .build()
            .is_err()
    );
    assert!(SamplerConfig::for_method(Method::Ds).build().is_err());
    assert!("bogus".parse::<Method>().is_err());
}

#[test]
fn ablation_writes_csv_markdown_and_plots() {
    let cfg: AblationConfig = toml::from_str(
        r#"
        [sim]
        num_prompts = 256
        batch_size = 8
        steps = 30
        warmup_steps = 5
        [samplers.dps_risk]
        method = "dps"
        acquisition = { kind = "risk", kappa = 0.5 }
        "#,
    )
    .unwrap();
    assert!(toml::from_str::<AblationConfig>("[sim]\nsteps = 3\nbogus = 1").is_err());
    let dir = tempfile::tempdir().unwrap();
    let methods: Vec<String> = [
        "uniform", "ds", "hr", "greso", "mopps", "dps", "dps_risk", "oracle",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let r = run_simulated_ablation(&cfg, &methods, 2, dir.path()).unwrap();
    assert_eq!(r.summaries.len(), methods.len());
    assert_eq!(r.runs.len(), 2 * methods.len());
    for f in [
        "runs.csv",
        "summary.md",
        "summary.json",
        "accuracy_vs_rollouts.png",
        "accuracy_vs_rollouts.svg",
        "effective_ratio.png",
        "effective_ratio.svg",
    ] {
        let meta = std::fs::metadata(dir.path().join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(meta.len() > 100, "{f} is empty");
    }
    let csv = std::fs::read_to_string(dir.path().join("runs.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * methods.len() * 30);
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(md.contains("| dps_risk |") && md.contains("Spearman"));
    assert!(run_simulated_ablation(&cfg, &["nope".to_string()], 1, dir.path()).is_err());
}

#[test]
fn shipped_example_config_parses_to_the_defaults() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/ablate_sim.toml"
    ))
    .unwrap();
    let cfg: AblationConfig = toml::from_str(&text).unwrap();
    assert_eq!(cfg.sim, augur_sampler::sim::SimConfig::default());
    assert_eq!(
        cfg.samplers["mopps"],
        SamplerConfig::for_method(Method::Mopps)
    );
    assert_eq!(cfg.samplers["dps"], SamplerConfig::for_method(Method::Dps));
}
