//! Resume-equivalence: a sampler restored from a checkpoint (through JSON text, as on disk)
//! makes exactly the same choices as the one that kept running.

use augur_sampler::sim::{SimConfig, SimLearner};
use augur_sampler::{
    AcquisitionConfig, DsConfig, DynamicSampling, Method, Sampler, SamplerConfig, SamplerState,
};

/// Per step: chosen ids, their predictions, effective ratio, Brier score.
type Trace = (Vec<u32>, Vec<f32>, f64, Option<f64>);

fn drive(s: &mut Sampler, l: &mut SimLearner, steps: usize) -> Vec<Trace> {
    let pool: Vec<u32> = (0..l.len() as u32).collect();
    (0..steps)
        .map(|_| {
            let sel = s.select(&pool, 16).unwrap();
            let outs = l.rollout(&sel.ids).unwrap();
            l.train(&outs);
            let t = s.observe(&outs).unwrap();
            (sel.ids, sel.predicted, t.effective_ratio, t.brier)
        })
        .collect()
}

fn check(cfg: SamplerConfig) {
    let sim = SimConfig {
        num_prompts: 300,
        ..Default::default()
    };
    let mut a = cfg.build().unwrap();
    let mut la = SimLearner::new(&sim, 4).unwrap();
    drive(&mut a, &mut la, 12);
    let json = serde_json::to_string(&a.state().unwrap()).unwrap();
    let mut lb = la.clone();
    let tail_a = drive(&mut a, &mut la, 12);

    let mut b = cfg.build().unwrap();
    let st: SamplerState = serde_json::from_str(&json).unwrap();
    b.load_state(st).unwrap();
    let tail_b = drive(&mut b, &mut lb, 12);
    assert_eq!(tail_a, tail_b, "{:?} diverged after resume", cfg.method);
}

#[test]
fn every_method_resumes_exactly() {
    for m in [
        Method::Uniform,
        Method::Hr,
        Method::Greso,
        Method::Mopps,
        Method::Dps,
    ] {
        check(SamplerConfig {
            seed: 11,
            ..SamplerConfig::for_method(m)
        });
    }
    let mut decayed = SamplerConfig::for_method(Method::Mopps);
    decayed.mopps.lambda = 0.5;
    check(decayed);
    for acq in [
        AcquisitionConfig::Risk { kappa: 1.0 },
        AcquisitionConfig::Cvar { alpha: 0.3 },
        AcquisitionConfig::Band {
            low: 0.2,
            high: 0.8,
            estimate: Default::default(),
        },
    ] {
        let mut c = SamplerConfig::for_method(Method::Dps);
        c.acquisition = Some(acq);
        check(c);
    }
}

#[test]
fn state_of_another_method_is_rejected() {
    let a = SamplerConfig::for_method(Method::Mopps).build().unwrap();
    let mut b = SamplerConfig::for_method(Method::Dps).build().unwrap();
    assert!(b.load_state(a.state().unwrap()).is_err());
}

#[test]
fn ds_resumes_exactly() {
    let sim = SimConfig {
        num_prompts: 300,
        ..Default::default()
    };
    let pool: Vec<u32> = (0..300).collect();
    let mut ds = DynamicSampling::new(DsConfig::default(), 3).unwrap();
    let mut l = SimLearner::new(&sim, 1).unwrap();
    for _ in 0..5 {
        let r = ds.step(&pool, 16, |ids| l.rollout(ids)).unwrap();
        l.train(&r.kept);
    }
    let json = serde_json::to_string(&ds).unwrap();
    let mut ds2: DynamicSampling = serde_json::from_str(&json).unwrap();
    let mut l2 = l.clone();
    for _ in 0..5 {
        let a = ds.step(&pool, 16, |ids| l.rollout(ids)).unwrap();
        let b = ds2.step(&pool, 16, |ids| l2.rollout(ids)).unwrap();
        assert_eq!(a.kept, b.kept);
        assert_eq!(
            a.telemetry.rollouts_cumulative,
            b.telemetry.rollouts_cumulative
        );
        l.train(&a.kept);
        l2.train(&b.kept);
    }
}
