//! Issue 7's simulated-learner assertions, on the default simulated config with 3 seeds.

use augur_sampler::sim::{run_ablation, AblationConfig, MethodSummary};

fn summaries() -> Vec<MethodSummary> {
    let methods: Vec<String> = ["uniform", "ds", "mopps", "dps", "oracle"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    run_ablation(&AblationConfig::default(), &methods, 3)
        .expect("ablation")
        .summaries
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
            m.effective_ratio > uni.effective_ratio + 0.1,
            "{}: effective ratio {} vs uniform {}",
            m.method,
            m.effective_ratio,
            uni.effective_ratio
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
        ds.rollouts_per_step >= 3.0 * uni.rollouts_per_step,
        "DS spends {} rollouts/step vs uniform {}",
        ds.rollouts_per_step,
        uni.rollouts_per_step
    );
    let rho = mopps.spearman.expect("mopps has predictions");
    assert!(rho > 0.5, "MoPPS Spearman rho after warm-up {rho}");
}
