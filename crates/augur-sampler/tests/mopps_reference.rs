//! MoPPS through the simulated learner against an independent reference implementation:
//! Beta(1,1) posteriors updated by α += s, β += k − s, Thompson draws from `rand_distr::Beta`
//! (Cheng's algorithms, not augur's Gamma-ratio sampler), and the B draws closest to 0.5 by a
//! full sort. Both see the same learners and the same candidate pools, so any difference in
//! their results comes from the Thompson draws and the selection; over many seeds the means
//! must agree within their sampling error, and a sampler that does differ (uniform) must not.

use augur_sampler::sim::{run_simulation, RunSpec, SimConfig, SimLearner};
use rand::seq::index;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};

const SEEDS: u64 = 40;

/// The issue-14 client's setting: the whole pool of ~2000 prompts as candidates, B = 64, k = 8.
fn sim() -> SimConfig {
    SimConfig {
        num_prompts: 2000,
        batch_size: 64,
        pool_ratio: 0.0,
        steps: 150,
        ..Default::default()
    }
}

/// (final accuracy, mean effective ratio after warm-up) of one run.
type Summary = (f64, f64);

fn reference_run(sim: &SimConfig, seed: u64) -> Summary {
    let mut learner = SimLearner::new(sim, seed).expect("learner");
    let n = learner.len();
    let (b, pool, k) = (sim.batch_size, sim.pool_size(), sim.group_size);
    // The candidate pools of `run_simulation` (same stream), then our own randomness.
    let mut pool_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9001);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7E7E_7E7E);
    let mut posterior = vec![(1.0f64, 1.0f64); n];
    let mut effective = Vec::new();
    for step in 0..sim.steps {
        let cands: Vec<u32> = if pool >= n {
            (0..n as u32).collect()
        } else {
            index::sample(&mut pool_rng, n, pool)
                .into_iter()
                .map(|i| i as u32)
                .collect()
        };
        let mut scored: Vec<(f64, u32)> = cands
            .iter()
            .map(|&id| {
                let (a, bb) = posterior[id as usize];
                let draw = Beta::new(a, bb).expect("beta").sample(&mut rng);
                ((draw - 0.5).abs(), id)
            })
            .collect();
        scored.sort_by(|x, y| x.0.total_cmp(&y.0));
        let ids: Vec<u32> = scored[..b].iter().map(|&(_, id)| id).collect();
        let outs = learner.rollout(&ids).expect("rollout");
        learner.train(&outs);
        if step >= sim.warmup_steps {
            let eff = outs.iter().filter(|o| o.is_effective()).count();
            effective.push(eff as f64 / outs.len() as f64);
        }
        for o in &outs {
            let e = &mut posterior[o.id as usize];
            e.0 += o.successes as f64;
            e.1 += (k - o.successes) as f64;
        }
    }
    let mean_eff = effective.iter().sum::<f64>() / effective.len() as f64;
    (learner.accuracy(), mean_eff)
}

fn augur_run(sim: &SimConfig, method: &str, seed: u64) -> Summary {
    let spec = RunSpec::from_name(method).expect("method");
    let r = run_simulation(sim, method, &spec, seed).expect("run");
    let eff = r
        .mean_after(sim.warmup_steps, |s| Some(s.effective_ratio))
        .expect("steps after warm-up");
    (r.final_accuracy(), eff)
}

/// Mean and standard error of the mean.
fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

/// Whether two sets of per-seed values have means within 4 standard errors of each other;
/// returns the gap and the bound for the message.
fn agree(a: &[f64], b: &[f64]) -> (bool, f64, f64) {
    let ((ma, sa), (mb, sb)) = (mean_se(a), mean_se(b));
    let bound = 4.0 * (sa * sa + sb * sb).sqrt();
    ((ma - mb).abs() < bound, ma - mb, bound)
}

#[test]
fn mopps_matches_an_independent_reference_on_the_simulated_learner() {
    let sim = sim();
    let runs = |f: &dyn Fn(u64) -> Summary| -> (Vec<f64>, Vec<f64>) {
        (0..SEEDS).map(|s| f(1000 + s)).unzip()
    };
    let (ours_acc, ours_eff) = runs(&|s| augur_run(&sim, "mopps", s));
    let (ref_acc, ref_eff) = runs(&|s| reference_run(&sim, s));
    let (uni_acc, uni_eff) = runs(&|s| augur_run(&sim, "uniform", s));
    for (what, ours, reference, uniform) in [
        ("final accuracy", &ours_acc, &ref_acc, &uni_acc),
        ("effective ratio", &ours_eff, &ref_eff, &uni_eff),
    ] {
        let (ok, gap, bound) = agree(ours, reference);
        println!(
            "{what}: augur MoPPS {:.4} ± {:.4}, reference {:.4} ± {:.4}, uniform {:.4}",
            mean_se(ours).0,
            mean_se(ours).1,
            mean_se(reference).0,
            mean_se(reference).1,
            mean_se(uniform).0
        );
        assert!(
            ok,
            "{what}: augur MoPPS {:.4} vs reference {:.4} (gap {gap:.4}, bound {bound:.4})",
            mean_se(ours).0,
            mean_se(reference).0
        );
        // The comparison has power: uniform, which does differ, is told apart.
        let (same, gap, bound) = agree(uniform, reference);
        assert!(
            !same,
            "{what}: uniform not told apart from MoPPS (gap {gap:.4}, bound {bound:.4})"
        );
    }
    // The effective ratio agrees to about the third decimal.
    let gap = (mean_se(&ours_eff).0 - mean_se(&ref_eff).0).abs();
    assert!(gap < 0.01, "effective ratio gap {gap:.4}");
}
