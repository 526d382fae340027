//! The simulated ablation: issue 7's assertions on the default simulated config with 3 seeds,
//! GPS against uniform, the config's parsing and the files it writes.

use augur_ablate::sim::{run_ablation, run_simulated_ablation, AblationConfig};
use augur_ablate::{MethodSummary, Stat};
use augur_sampler::sim::SimConfig;
use augur_sampler::{Method, SamplerConfig};

fn summaries() -> Vec<MethodSummary> {
    let methods: Vec<String> = ["uniform", "ds", "mopps", "dps", "oracle"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    run_ablation(&AblationConfig::default(), &methods, 3)
        .expect("ablation")
        .summaries
}

/// The mean over seeds of a value every run has.
fn mean(s: Option<Stat>) -> f64 {
    s.expect("every run has it").mean
}

#[test]
fn predictive_samplers_beat_uniform() {
    let s = summaries();
    let get = |m: &str| s.iter().find(|x| x.method == m).expect(m).clone();
    let (uni, ds, mopps, dps, oracle) = (
        get("uniform"),
        get("ds"),
        get("mopps"),
        get("dps"),
        get("oracle"),
    );
    for m in [&mopps, &dps] {
        assert!(
            mean(m.effective_ratio) > mean(uni.effective_ratio) + 0.1,
            "{}: effective ratio {} vs uniform {}",
            m.method,
            mean(m.effective_ratio),
            mean(uni.effective_ratio)
        );
        let r = m
            .ratio_vs_uniform
            .expect("reached uniform's final accuracy on every seed");
        assert!(r <= 0.65, "{}: {r:.3}x uniform's rollouts", m.method);
    }
    let ro = oracle.ratio_vs_uniform.expect("oracle reaches target");
    assert!(
        ro < mopps.ratio_vs_uniform.unwrap() && ro < dps.ratio_vs_uniform.unwrap(),
        "oracle is the upper bound"
    );
    assert!(
        mean(ds.budget_per_step) >= 3.0 * mean(uni.budget_per_step),
        "DS spends {} rollouts/step vs uniform {}",
        mean(ds.budget_per_step),
        mean(uni.budget_per_step)
    );
    let rho = mopps.spearman.expect("mopps has predictions").mean;
    assert!(rho > 0.5, "MoPPS Spearman rho after warm-up {rho}");
}

#[test]
fn gps_beats_uniform_on_the_simulated_learner() {
    let cfg = AblationConfig {
        sim: SimConfig {
            steps: 150,
            ..Default::default()
        },
        ..Default::default()
    };
    let methods = vec!["uniform".to_string(), "gps".to_string()];
    let r = run_ablation(&cfg, &methods, 1).unwrap();
    let (uni, gps) = (&r.summaries[0], &r.summaries[1]);
    assert!(
        mean(gps.effective_ratio) > mean(uni.effective_ratio) + 0.2,
        "gps effective ratio {} vs uniform {}",
        mean(gps.effective_ratio),
        mean(uni.effective_ratio)
    );
    assert!(mean(gps.final_accuracy) > mean(uni.final_accuracy));
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
    // One row per step (and the step-0 row of the initial accuracy) in steps.csv, one per run
    // in runs.csv.
    let csv = std::fs::read_to_string(dir.path().join("steps.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * methods.len() * (30 + 1));
    let csv = std::fs::read_to_string(dir.path().join("runs.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * methods.len());
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
    assert_eq!(cfg.sim, SimConfig::default());
    assert_eq!(
        cfg.samplers["mopps"],
        SamplerConfig::for_method(Method::Mopps)
    );
    assert_eq!(cfg.samplers["dps"], SamplerConfig::for_method(Method::Dps));
}
