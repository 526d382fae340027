//! The fused AdamW against candle-nn's `AdamW` (an independent implementation), plus clipping,
//! the NaN guard, accumulation and state round trips.

use super::*;
use candle_nn::Optimizer;

fn var(v: &[f32], shape: &[usize]) -> Var {
    Var::from_tensor(&Tensor::from_slice(v, shape, &Device::Cpu).unwrap()).unwrap()
}

fn values(v: &Var) -> Vec<f32> {
    v.as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

/// A small non-quadratic objective with a gradient for every element.
fn objective(a: &Var, b: &Var) -> Tensor {
    let ta = Tensor::from_slice(
        &[
            0.3f32, -1.0, 2.0, 0.5, 1.5, -0.7, 0.1, 0.9, -2.0, 1.1, 0.4, -0.3,
        ],
        (3, 4),
        &Device::Cpu,
    )
    .unwrap();
    let la = (a.as_tensor() - &ta)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap();
    let lb = b.as_tensor().sin().unwrap().sum_all().unwrap();
    let cross = a
        .as_tensor()
        .sum_all()
        .unwrap()
        .mul(&b.as_tensor().sum_all().unwrap())
        .unwrap();
    ((la + lb).unwrap() + (cross * 0.1).unwrap()).unwrap()
}

fn init() -> (Vec<f32>, Vec<f32>) {
    let a: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
    let b: Vec<f32> = (0..5).map(|i| (i as f32 * 0.91).cos()).collect();
    (a, b)
}

#[test]
fn matches_candle_nn_adamw() {
    let (a0, b0) = init();
    let (a1, b1) = (var(&a0, &[3, 4]), var(&b0, &[5]));
    let (a2, b2) = (var(&a0, &[3, 4]), var(&b0, &[5]));
    let params = candle_nn::ParamsAdamW {
        lr: 0.05,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    let mut reference = candle_nn::AdamW::new(vec![a1.clone(), b1.clone()], params).unwrap();
    let cfg = AdamWConfig {
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.1,
        max_grad_norm: None,
        max_consecutive_skips: 3,
    };
    let mut fused = FusedAdamW::new(
        vec![("a".into(), a2.clone()), ("b".into(), b2.clone())],
        cfg,
    )
    .unwrap();
    for step in 1..=8 {
        reference.backward_step(&objective(&a1, &b1)).unwrap();
        let report = fused.backward_step(&objective(&a2, &b2), 0.05).unwrap();
        assert_eq!(report.step, step);
        assert!(!report.skipped);
        for (x, y) in values(&a1)
            .iter()
            .chain(&values(&b1))
            .zip(values(&a2).iter().chain(&values(&b2)))
        {
            assert!(
                (x - y).abs() < 1e-6,
                "step {step}: candle-nn {x} vs fused {y}"
            );
        }
    }
    // it moved
    assert!((values(&a2)[0] - a0[0]).abs() > 0.1);
}

#[test]
fn non_cpu_or_non_f32_path_matches_in_place_path() {
    // An f64 parameter goes through the copy path; its result must equal the f32 in-place path.
    let (a0, b0) = init();
    let a32 = var(&a0, &[3, 4]);
    let b32 = var(&b0, &[5]);
    let a64 = Var::from_tensor(&a32.as_tensor().to_dtype(DType::F64).unwrap()).unwrap();
    let b64 = Var::from_tensor(&b32.as_tensor().to_dtype(DType::F64).unwrap()).unwrap();
    let cfg = AdamWConfig {
        weight_decay: 0.01,
        ..Default::default()
    };
    let mut o32 = FusedAdamW::new(
        vec![("a".into(), a32.clone()), ("b".into(), b32.clone())],
        cfg.clone(),
    )
    .unwrap();
    let mut o64 = FusedAdamW::new(
        vec![("a".into(), a64.clone()), ("b".into(), b64.clone())],
        cfg,
    )
    .unwrap();
    for _ in 0..3 {
        o32.backward_step(&objective(&a32, &b32), 0.01).unwrap();
        // f32 gradients of the f64 parameters' values, filed under the f64 variables
        let a_leaf = Var::from_tensor(&a64.as_tensor().to_dtype(DType::F32).unwrap()).unwrap();
        let b_leaf = Var::from_tensor(&b64.as_tensor().to_dtype(DType::F32).unwrap()).unwrap();
        let g = objective(&a_leaf, &b_leaf).backward().unwrap();
        let mut store = GradStore::default();
        store.insert(a64.as_tensor(), g.get(a_leaf.as_tensor()).unwrap().clone());
        store.insert(b64.as_tensor(), g.get(b_leaf.as_tensor()).unwrap().clone());
        o64.accumulate(&store).unwrap();
        o64.step(0.01).unwrap();
    }
    let x = values(&a32);
    let y = a64
        .as_tensor()
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for (x, y) in x.iter().zip(&y) {
        assert!((x - y).abs() < 1e-6, "{x} vs {y}");
    }
}

#[test]
fn global_norm_clipping() {
    // grad = [3, 4] on one parameter and [0, 12] on another: global norm 13.
    let p = var(&[1.0, 1.0], &[2]);
    let q = var(&[1.0, 1.0], &[2]);
    let cfg = AdamWConfig {
        max_grad_norm: Some(1.0),
        ..Default::default()
    };
    let mut opt =
        FusedAdamW::new(vec![("p".into(), p.clone()), ("q".into(), q.clone())], cfg).unwrap();
    let mut store = GradStore::default();
    store.insert(
        p.as_tensor(),
        Tensor::new(&[3.0f32, 4.0], &Device::Cpu).unwrap(),
    );
    store.insert(
        q.as_tensor(),
        Tensor::new(&[0.0f32, 12.0], &Device::Cpu).unwrap(),
    );
    opt.accumulate(&store).unwrap();
    let r = opt.step(1e-3).unwrap();
    assert!((r.grad_norm - 13.0).abs() < 1e-9);
    let coef = 1.0 / (13.0 + 1e-6);
    assert!((r.clip_coef - coef).abs() < 1e-12);
    // m after one step = (1 - beta1) * clipped grad
    let state = opt.export_state().unwrap();
    let m = state["m.q"].to_vec1::<f32>().unwrap();
    assert!((m[1] as f64 - 0.1 * 12.0 * coef).abs() < 1e-7, "{m:?}");
    // no clipping below the threshold
    let mut store = GradStore::default();
    store.insert(
        p.as_tensor(),
        Tensor::new(&[0.3f32, 0.4], &Device::Cpu).unwrap(),
    );
    opt.accumulate(&store).unwrap();
    let r = opt.step(1e-3).unwrap();
    assert!((r.grad_norm - 0.5).abs() < 1e-7);
    assert_eq!(r.clip_coef, 1.0);
}

#[test]
fn non_finite_gradients_skip_the_step() {
    let p = var(&[1.0, 2.0], &[2]);
    let cfg = AdamWConfig {
        max_consecutive_skips: 3,
        ..Default::default()
    };
    let mut opt = FusedAdamW::new(vec![("p".into(), p.clone())], cfg).unwrap();
    let nan = |x: f32| {
        let mut s = GradStore::default();
        s.insert(
            p.as_tensor(),
            Tensor::new(&[0.5f32, x], &Device::Cpu).unwrap(),
        );
        s
    };
    opt.accumulate(&nan(f32::NAN)).unwrap();
    let r = opt.step(0.1).unwrap();
    assert!(r.skipped && r.grad_norm.is_nan());
    assert_eq!((r.consecutive_skips, r.step), (1, 0));
    assert_eq!(values(&p), vec![1.0, 2.0]);
    assert!(opt.export_state().unwrap()["m.p"]
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .all(|&x| x == 0.0));
    opt.accumulate(&nan(f32::INFINITY)).unwrap();
    assert_eq!(opt.step(0.1).unwrap().consecutive_skips, 2);
    // a finite step resets the counter
    opt.accumulate(&nan(1.0)).unwrap();
    let r = opt.step(0.1).unwrap();
    assert!(!r.skipped && r.step == 1 && r.consecutive_skips == 0);
    assert_ne!(values(&p), vec![1.0, 2.0]);
    // three in a row is an error
    for i in 1..=3 {
        opt.accumulate(&nan(f32::NAN)).unwrap();
        let r = opt.step(0.1);
        if i < 3 {
            assert!(r.unwrap().skipped);
        } else {
            assert!(matches!(
                r,
                Err(Error::TooManySkippedSteps { count: 3, limit: 3 })
            ));
        }
    }
}

#[test]
fn accumulation_equals_one_step_on_the_sum() {
    let (a0, b0) = init();
    let (a1, b1) = (var(&a0, &[3, 4]), var(&b0, &[5]));
    let (a2, b2) = (var(&a0, &[3, 4]), var(&b0, &[5]));
    let cfg = AdamWConfig::default();
    let mut o1 = FusedAdamW::new(
        vec![("a".into(), a1.clone()), ("b".into(), b1.clone())],
        cfg.clone(),
    )
    .unwrap();
    let mut o2 = FusedAdamW::new(
        vec![("a".into(), a2.clone()), ("b".into(), b2.clone())],
        cfg,
    )
    .unwrap();
    for _ in 0..3 {
        let whole = (objective(&a1, &b1) * 2.0).unwrap();
        o1.backward_step(&whole, 0.01).unwrap();
        for _ in 0..2 {
            o2.accumulate(&objective(&a2, &b2).backward().unwrap())
                .unwrap();
        }
        o2.step(0.01).unwrap();
    }
    for (x, y) in values(&a1).iter().zip(&values(&a2)) {
        assert!((x - y).abs() < 1e-6);
    }
}

#[test]
fn state_round_trip_resumes_exactly() {
    let (a0, b0) = init();
    let (a1, b1) = (var(&a0, &[3, 4]), var(&b0, &[5]));
    let cfg = AdamWConfig {
        weight_decay: 0.05,
        ..Default::default()
    };
    let mut o1 = FusedAdamW::new(
        vec![("a".into(), a1.clone()), ("b".into(), b1.clone())],
        cfg.clone(),
    )
    .unwrap();
    for _ in 0..3 {
        o1.backward_step(&objective(&a1, &b1), 0.02).unwrap();
    }
    let state = o1.export_state().unwrap();
    // a fresh run from the saved parameters and state
    let a2 = var(&values(&a1), &[3, 4]);
    let b2 = var(&values(&b1), &[5]);
    let mut o2 = FusedAdamW::new(
        vec![("a".into(), a2.clone()), ("b".into(), b2.clone())],
        cfg,
    )
    .unwrap();
    o2.import_state(&state).unwrap();
    assert_eq!(o2.steps(), 3);
    for _ in 0..2 {
        o1.backward_step(&objective(&a1, &b1), 0.02).unwrap();
        o2.backward_step(&objective(&a2, &b2), 0.02).unwrap();
    }
    assert_eq!(values(&a1), values(&a2));
    assert_eq!(values(&b1), values(&b2));

    // mismatches are errors that name the key
    let mut bad = state.clone();
    bad.remove("m.a");
    assert!(matches!(o2.import_state(&bad), Err(Error::State(e)) if e.contains("m.a")));
    let mut bad = state.clone();
    bad.insert(
        "v.a".into(),
        Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap(),
    );
    assert!(o2.import_state(&bad).is_err());
    let mut bad = state.clone();
    bad.insert(
        "m.c".into(),
        Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap(),
    );
    assert!(matches!(o2.import_state(&bad), Err(Error::State(e)) if e.contains("m.c")));
}

#[test]
fn bad_inputs_are_errors() {
    let p = var(&[1.0], &[1]);
    assert!(FusedAdamW::new(
        vec![("p".into(), p.clone()), ("p".into(), var(&[1.0], &[1]))],
        AdamWConfig::default()
    )
    .is_err());
    let ids = Var::from_tensor(&Tensor::new(&[1u32], &Device::Cpu).unwrap()).unwrap();
    assert!(FusedAdamW::new(vec![("i".into(), ids)], AdamWConfig::default()).is_err());
    let bad = AdamWConfig {
        beta2: 1.0,
        ..Default::default()
    };
    assert!(FusedAdamW::new(vec![("p".into(), p.clone())], bad).is_err());
    let mut opt = FusedAdamW::new(vec![("p".into(), p.clone())], AdamWConfig::default()).unwrap();
    assert!(opt.step(0.1).is_err()); // nothing accumulated
    let mut s = GradStore::default();
    s.insert(
        p.as_tensor(),
        Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap(),
    );
    assert!(matches!(opt.accumulate(&s), Err(Error::Shape(_))));
    let mut s = GradStore::default();
    s.insert(p.as_tensor(), Tensor::new(&[1.0f32], &Device::Cpu).unwrap());
    opt.accumulate(&s).unwrap();
    assert!(opt.step(f64::NAN).is_err());
    assert!(toml::from_str::<AdamWConfig>("lr = 1e-4").is_err());
    let c: AdamWConfig = toml::from_str("weight_decay = 0.1\nmax_grad_norm = 0.5").unwrap();
    assert_eq!(c.max_grad_norm, Some(0.5));
}
