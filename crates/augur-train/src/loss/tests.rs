//! Hand-computed checks of every aggregation mode, KL estimator, the clip boundaries and the GSPO
//! ratio, plus finite-difference checks of the gradient with respect to `logp`.

use super::*;
use candle_core::{Device, Var};

fn t2(v: &[f64], b: usize, t: usize) -> Tensor {
    Tensor::from_vec(v.to_vec(), (b, t), &Device::Cpu).unwrap()
}

/// One batch in f64 host form.
#[derive(Clone)]
struct Batch {
    b: usize,
    t: usize,
    logp: Vec<f64>,
    old: Vec<f64>,
    reference: Option<Vec<f64>>,
    adv: Vec<f64>,
    mask: Vec<f64>,
    truncated: Option<Vec<bool>>,
}

impl Batch {
    fn new(
        b: usize,
        t: usize,
        logp: Vec<f64>,
        old: Vec<f64>,
        adv: Vec<f64>,
        mask: Vec<f64>,
    ) -> Self {
        Self {
            b,
            t,
            logp,
            old,
            reference: None,
            adv,
            mask,
            truncated: None,
        }
    }

    /// Loss value and statistics at `logp` (a plain tensor: no gradient).
    fn eval(&self, logp: &Tensor, cfg: &PolicyLossConfig) -> Result<(Tensor, LossStats)> {
        let old = t2(&self.old, self.b, self.t);
        let reference = self.reference.as_ref().map(|r| t2(r, self.b, self.t));
        let adv = Tensor::from_vec(self.adv.clone(), self.b, &Device::Cpu).unwrap();
        let mask = t2(&self.mask, self.b, self.t).to_dtype(DType::F32).unwrap();
        policy_loss(
            &LossInputs {
                logp,
                old_logp: &old,
                ref_logp: reference.as_ref(),
                advantages: &adv,
                mask: &mask,
                truncated: self.truncated.as_deref(),
                entropy: None,
                counts: None,
            },
            cfg,
        )
    }

    /// Loss, d loss / d logp (row-major) and statistics.
    fn run(&self, cfg: &PolicyLossConfig) -> (f64, Vec<f64>, LossStats) {
        let var = Var::from_tensor(&t2(&self.logp, self.b, self.t)).unwrap();
        let (loss, stats) = self.eval(var.as_tensor(), cfg).unwrap();
        let grads = loss.backward().unwrap();
        let g = grads
            .get(var.as_tensor())
            .map(|g| g.flatten_all().unwrap().to_vec1::<f64>().unwrap())
            .unwrap_or_else(|| vec![0.0; self.b * self.t]);
        (loss.to_scalar::<f64>().unwrap(), g, stats)
    }
}

fn assert_close(got: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, want {want} (diff {})",
        (got - want).abs()
    );
}

fn assert_all_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_close(*g, *w, tol, &format!("{what}[{i}]"));
    }
}

/// Ratio 1 everywhere, rows of 2 and 1 valid tokens, advantages 1 and -3: per-token losses
/// row 0 = [-1, -1, pad], row 1 = [3, pad, pad].
fn two_rows() -> Batch {
    let logp = vec![-1.0, -2.0, -3.0, -0.5, -0.7, -0.9];
    Batch::new(
        2,
        3,
        logp.clone(),
        logp,
        vec![1.0, -3.0],
        vec![1.0, 1.0, 0.0, 1.0, 0.0, 0.0],
    )
}

#[test]
fn seq_mean_token_mean_by_hand() {
    // ((-1 - 1) / 2 + 3 / 1) / 2 = 1; d/dlogp = -A * 1 / (n_i * 2)
    let (loss, g, st) = two_rows().run(&PolicyLossConfig::default());
    assert_close(loss, 1.0, 1e-12, "loss");
    assert_all_close(&g, &[-0.25, -0.25, 0.0, 1.5, 0.0, 0.0], 1e-12, "grad");
    assert_close(st.pg_loss, 1.0, 1e-12, "pg_loss");
    assert_eq!(
        st.counts,
        BatchCounts {
            sequences: 2,
            tokens: 3
        }
    );
    assert_close(st.ratio_mean, 1.0, 1e-12, "ratio_mean");
    assert_eq!(st.clip_frac, 0.0);
}

#[test]
fn token_mean_by_hand() {
    // (-1 - 1 + 3) / 3 = 1/3; d/dlogp = -A / 3
    let cfg = PolicyLossConfig {
        aggregation: LossAggregation::TokenMean,
        ..Default::default()
    };
    let (loss, g, _) = two_rows().run(&cfg);
    assert_close(loss, 1.0 / 3.0, 1e-12, "loss");
    let third = 1.0 / 3.0;
    assert_all_close(&g, &[-third, -third, 0.0, 1.0, 0.0, 0.0], 1e-12, "grad");
}

#[test]
fn seq_mean_token_sum_norm_by_hand() {
    // (-2 + 3) / (2 completions * 4) = 0.125; d/dlogp = -A / 8
    let cfg = PolicyLossConfig {
        aggregation: LossAggregation::SeqMeanTokenSumNorm,
        max_response_len: Some(4),
        ..Default::default()
    };
    let (loss, g, _) = two_rows().run(&cfg);
    assert_close(loss, 0.125, 1e-12, "loss");
    assert_all_close(&g, &[-0.125, -0.125, 0.0, 0.375, 0.0, 0.0], 1e-12, "grad");
}

#[test]
fn clipping_boundaries_both_signs() {
    // One token per row, token-mean over 8 rows; eps_low 0.2, eps_high 0.28 (DAPO clip-higher).
    let d = 1e-4;
    let cases: [(f64, f64, bool); 8] = [
        (1.0, 1.28 - d, false),  // A > 0 just inside the upper bound: gradient flows
        (1.0, 1.28 + d, true),   // A > 0 just outside: clipped, constant -1.28
        (-1.0, 0.8 + d, false),  // A < 0 just inside the lower bound
        (-1.0, 0.8 - d, true),   // A < 0 just outside: clipped, constant 0.8
        (1.0, 0.8 - d, false),   // A > 0 below the lower bound: never clipped
        (-1.0, 1.28 + d, false), // A < 0 above the upper bound: never clipped
        (2.0, 1.0, false),
        (0.0, 1.5, false),
    ];
    let old: Vec<f64> = (0..8).map(|i| -0.1 * i as f64 - 0.3).collect();
    let logp: Vec<f64> = cases
        .iter()
        .zip(&old)
        .map(|((_, r, _), o)| o + r.ln())
        .collect();
    let adv = cases.iter().map(|c| c.0).collect();
    let batch = Batch::new(8, 1, logp, old, adv, vec![1.0; 8]);
    let cfg = PolicyLossConfig {
        eps_low: 0.2,
        eps_high: 0.28,
        aggregation: LossAggregation::TokenMean,
        ..Default::default()
    };
    let (loss, g, st) = batch.run(&cfg);
    let mut want_loss = 0.0;
    for (i, &(a, r, clipped)) in cases.iter().enumerate() {
        let (l, grad) = if clipped {
            (-a * r.clamp(0.8, 1.28), 0.0)
        } else {
            (-a * r, -a * r / 8.0)
        };
        want_loss += l / 8.0;
        assert_close(g[i], grad, 1e-9, &format!("grad of case {i}"));
    }
    // hand values: sum of per-token losses
    let hand = -(1.28 - d) - 1.28 + (0.8 + d) + 0.8 - (0.8 - d) + (1.28 + d) - 2.0 + 0.0;
    assert_close(want_loss, hand / 8.0, 1e-12, "hand sum");
    assert_close(loss, hand / 8.0, 1e-9, "loss");
    assert_close(st.clip_frac_high, 1.0 / 8.0, 1e-12, "clip_frac_high");
    assert_close(st.clip_frac_low, 1.0 / 8.0, 1e-12, "clip_frac_low");
    assert_close(st.clip_frac, 0.25, 1e-12, "clip_frac");
}

fn kl_batch(logp: f64, reference: f64) -> Batch {
    let mut b = Batch::new(1, 1, vec![logp], vec![logp], vec![0.0], vec![1.0]);
    b.reference = Some(vec![reference]);
    b
}

#[test]
fn kl_estimators_by_hand() {
    // logp = -1, ref = -1.5: logp - ref = 0.5, d = ref - logp = -0.5.
    let e = (-0.5f64).exp(); // 0.6065306597
    let cases = [
        (KlEstimator::K1, 0.5, 1.0),
        (KlEstimator::K2, 0.125, 0.5),
        (KlEstimator::K3, e + 0.5 - 1.0, 1.0 - e), // 0.1065306597, 0.3934693403
    ];
    for (est, kl, dkl) in cases {
        let cfg = PolicyLossConfig {
            beta: 0.1,
            kl_estimator: est,
            ..Default::default()
        };
        let (loss, g, st) = kl_batch(-1.0, -1.5).run(&cfg);
        assert_close(loss, 0.1 * kl, 1e-12, &format!("{est:?} loss"));
        assert_close(g[0], 0.1 * dkl, 1e-12, &format!("{est:?} grad"));
        assert_close(st.kl.unwrap(), kl, 1e-12, &format!("{est:?} stat"));
    }
}

#[test]
fn k3_is_clamped_like_verl() {
    let cfg = PolicyLossConfig {
        beta: 1.0,
        kl_estimator: KlEstimator::K3,
        ..Default::default()
    };
    // d = ref - logp = 30 → clamped to 20 → e^20 - 21 → clamped to 10, no gradient.
    let (loss, g, _) = kl_batch(-30.0, 0.0).run(&cfg);
    assert_close(loss, 10.0, 1e-12, "upper clamp");
    assert_eq!(g[0], 0.0);
    // d = -30 → clamped to -20 → e^-20 + 19 ≈ 19 → clamped to 10.
    let (loss, _, _) = kl_batch(0.0, -30.0).run(&cfg);
    assert_close(loss, 10.0, 1e-12, "lower-d clamp");
    // beta = 0 ignores the reference entirely, but still reports the KL.
    let (loss, _, st) = kl_batch(-1.0, -1.5).run(&PolicyLossConfig::default());
    assert_eq!(loss, 0.0);
    assert!(st.kl.is_some());
}

#[test]
fn gspo_sequence_ratio_by_hand() {
    // log ratios [0.1, -0.2, 0.4, (masked) 5.0]: s = exp(0.3 / 3) = exp(0.1)
    let old = vec![-1.0, -2.0, -0.5, -3.0];
    let lr = [0.1, -0.2, 0.4, 5.0];
    let logp: Vec<f64> = old.iter().zip(lr).map(|(o, r)| o + r).collect();
    let mask = vec![1.0, 1.0, 1.0, 0.0];
    let s = 0.1f64.exp();
    let seq = PolicyLossConfig {
        ratio: RatioLevel::Sequence,
        ..Default::default()
    };

    // A = 1, inside the clip range: loss -s, d/dlogp_t = -s / 3 on valid tokens (GSPO's gradient).
    let batch = Batch::new(1, 4, logp.clone(), old.clone(), vec![1.0], mask.clone());
    let (loss, g, st) = batch.run(&seq);
    assert_close(loss, -s, 1e-12, "loss");
    assert_all_close(&g, &[-s / 3.0, -s / 3.0, -s / 3.0, 0.0], 1e-12, "grad");
    assert_close(st.ratio_mean, s, 1e-12, "ratio_mean");

    // eps_high 0.05 < s - 1: the whole completion is clipped.
    let tight = PolicyLossConfig {
        eps_high: 0.05,
        ..seq.clone()
    };
    let (loss, g, st) = batch.run(&tight);
    assert_close(loss, -1.05, 1e-12, "clipped loss");
    assert_all_close(&g, &[0.0; 4], 0.0, "clipped grad");
    assert_close(st.clip_frac, 1.0, 1e-12, "clip_frac");

    // A = -1: a ratio above 1 is never clipped on the low side.
    let batch = Batch::new(1, 4, logp, old, vec![-1.0], mask);
    let (loss, g, _) = batch.run(&tight);
    assert_close(loss, s, 1e-12, "negative-advantage loss");
    assert_all_close(
        &g,
        &[s / 3.0, s / 3.0, s / 3.0, 0.0],
        1e-12,
        "negative-advantage grad",
    );
}

#[test]
fn truncated_completions_can_be_dropped() {
    let mut batch = Batch::new(
        2,
        2,
        vec![-1.0, -1.0, -1.0, -1.0],
        vec![-1.0, -1.0, -1.0, -1.0],
        vec![1.0, -5.0],
        vec![1.0; 4],
    );
    batch.truncated = Some(vec![false, true]);
    let (loss, g, st) = batch.run(&PolicyLossConfig::default());
    assert_close(loss, (-1.0 + 5.0) / 2.0, 1e-12, "kept");
    assert_eq!(st.counts.sequences, 2);
    let cfg = PolicyLossConfig {
        mask_truncated: true,
        ..Default::default()
    };
    let (loss, g2, st) = batch.run(&cfg);
    assert_close(loss, -1.0, 1e-12, "dropped");
    assert_eq!(
        st.counts,
        BatchCounts {
            sequences: 1,
            tokens: 2
        }
    );
    assert_all_close(&g2, &[-0.5, -0.5, 0.0, 0.0], 1e-12, "dropped grad");
    assert_ne!(g, g2);
}

#[test]
fn entropy_bonus_by_hand() {
    let zeros = t2(&[-1.0, -1.0], 1, 2);
    let adv = Tensor::new(&[0.0f64], &Device::Cpu).unwrap();
    let mask = t2(&[1.0, 1.0], 1, 2);
    let ent = Var::from_tensor(&t2(&[0.5, 1.5], 1, 2)).unwrap();
    let cfg = PolicyLossConfig {
        entropy_coef: 0.01,
        aggregation: LossAggregation::TokenMean,
        ..Default::default()
    };
    let (loss, st) = policy_loss(
        &LossInputs {
            logp: &zeros,
            old_logp: &zeros,
            ref_logp: None,
            advantages: &adv,
            mask: &mask,
            truncated: None,
            entropy: Some(ent.as_tensor()),
            counts: None,
        },
        &cfg,
    )
    .unwrap();
    assert_close(loss.to_scalar::<f64>().unwrap(), -0.01, 1e-12, "loss");
    assert_close(st.entropy.unwrap(), 1.0, 1e-12, "stat");
    let g = loss.backward().unwrap();
    let g = g.get(ent.as_tensor()).unwrap().flatten_all().unwrap();
    assert_all_close(
        &g.to_vec1::<f64>().unwrap(),
        &[-0.005, -0.005],
        1e-12,
        "grad",
    );
}

/// Deterministic pseudo-random values in [lo, hi).
fn values(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            lo + (hi - lo) * ((s >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect()
}

fn random_batch(seed: u64) -> Batch {
    let (b, t) = (3, 5);
    let logp = values(b * t, seed, -3.0, -0.1);
    let old: Vec<f64> = logp
        .iter()
        .zip(values(b * t, seed + 1, -0.3, 0.3))
        .map(|(l, n)| l + n)
        .collect();
    let reference = logp
        .iter()
        .zip(values(b * t, seed + 2, -0.5, 0.5))
        .map(|(l, n)| l + n)
        .collect();
    let mut mask = vec![1.0; b * t];
    mask[4] = 0.0;
    mask[8] = 0.0;
    mask[9] = 0.0;
    let mut batch = Batch::new(b, t, logp, old, values(b, seed + 3, -1.5, 1.5), mask);
    batch.reference = Some(reference);
    batch
}

#[test]
fn gradient_matches_finite_differences() {
    let aggs = [
        LossAggregation::SeqMeanTokenMean,
        LossAggregation::TokenMean,
        LossAggregation::SeqMeanTokenSumNorm,
    ];
    let mut checked = 0;
    for (k, agg) in aggs.into_iter().enumerate() {
        for ratio in [RatioLevel::Token, RatioLevel::Sequence] {
            for est in [KlEstimator::K1, KlEstimator::K2, KlEstimator::K3] {
                let batch = random_batch(11 + k as u64);
                let cfg = PolicyLossConfig {
                    aggregation: agg,
                    max_response_len: Some(8),
                    ratio,
                    beta: 0.05,
                    kl_estimator: est,
                    eps_low: 0.1,
                    eps_high: 0.15,
                    ..Default::default()
                };
                let (_, g, st) = batch.run(&cfg);
                let h = 1e-6;
                for i in 0..batch.logp.len() {
                    let f = |delta: f64| {
                        let mut lp = batch.logp.clone();
                        lp[i] += delta;
                        let (loss, _) = batch.eval(&t2(&lp, batch.b, batch.t), &cfg).unwrap();
                        loss.to_scalar::<f64>().unwrap()
                    };
                    let num = (f(h) - f(-h)) / (2.0 * h);
                    let rel = (num - g[i]).abs() / num.abs().max(g[i].abs()).max(1e-6);
                    assert!(
                        rel < 1e-3 || (num - g[i]).abs() < 1e-8,
                        "{agg:?} {ratio:?} {est:?} token {i}: analytic {} numeric {num}",
                        g[i]
                    );
                }
                checked += usize::from(st.clip_frac > 0.0);
            }
        }
    }
    // The random batches must exercise the clipped branch somewhere.
    assert!(checked > 0);
}

#[test]
fn micro_batches_add_up_to_the_batch() {
    let batch = random_batch(5);
    for agg in [
        LossAggregation::SeqMeanTokenMean,
        LossAggregation::TokenMean,
        LossAggregation::SeqMeanTokenSumNorm,
    ] {
        let cfg = PolicyLossConfig {
            aggregation: agg,
            max_response_len: Some(8),
            beta: 0.1,
            ..Default::default()
        };
        let (full, _) = batch.eval(&t2(&batch.logp, 3, 5), &cfg).unwrap();
        let mask = t2(&batch.mask, 3, 5);
        let total = batch_counts(&mask, None, &cfg).unwrap();
        let mut sum = 0.0;
        for rows in [0..1, 1..3] {
            let sl = |v: &[f64]| v[rows.start * 5..rows.end * 5].to_vec();
            let n = rows.len();
            let adv = Tensor::from_vec(batch.adv[rows.clone()].to_vec(), n, &Device::Cpu).unwrap();
            let (lp, old, rf, m) = (
                t2(&sl(&batch.logp), n, 5),
                t2(&sl(&batch.old), n, 5),
                t2(&sl(batch.reference.as_ref().unwrap()), n, 5),
                t2(&sl(&batch.mask), n, 5),
            );
            let (loss, _) = policy_loss(
                &LossInputs {
                    logp: &lp,
                    old_logp: &old,
                    ref_logp: Some(&rf),
                    advantages: &adv,
                    mask: &m,
                    truncated: None,
                    entropy: None,
                    counts: Some(total),
                },
                &cfg,
            )
            .unwrap();
            sum += loss.to_scalar::<f64>().unwrap();
        }
        assert_close(
            sum,
            full.to_scalar::<f64>().unwrap(),
            1e-12,
            &format!("{agg:?}"),
        );
    }
}

#[test]
fn f32_inputs_work() {
    let batch = two_rows();
    let lp = t2(&batch.logp, 2, 3).to_dtype(DType::F32).unwrap();
    let adv = Tensor::new(&[1.0f32, -3.0], &Device::Cpu).unwrap();
    let mask = t2(&batch.mask, 2, 3).to_dtype(DType::F32).unwrap();
    let (loss, _) = policy_loss(
        &LossInputs {
            logp: &lp,
            old_logp: &lp,
            ref_logp: None,
            advantages: &adv,
            mask: &mask,
            truncated: None,
            entropy: None,
            counts: None,
        },
        &PolicyLossConfig::default(),
    )
    .unwrap();
    assert_eq!(loss.dtype(), DType::F32);
    assert_close(loss.to_scalar::<f32>().unwrap() as f64, 1.0, 1e-6, "loss");
}

#[test]
fn bad_inputs_are_errors() {
    let batch = two_rows();
    let lp = t2(&batch.logp, 2, 3);
    let cfg = PolicyLossConfig::default();
    // beta > 0 without a reference
    let kl = PolicyLossConfig {
        beta: 0.1,
        ..Default::default()
    };
    assert!(matches!(batch.eval(&lp, &kl), Err(Error::Invalid(_))));
    // entropy bonus without entropies
    let ent = PolicyLossConfig {
        entropy_coef: 0.1,
        ..Default::default()
    };
    assert!(matches!(batch.eval(&lp, &ent), Err(Error::Invalid(_))));
    // sum-norm without its constant
    let norm = PolicyLossConfig {
        aggregation: LossAggregation::SeqMeanTokenSumNorm,
        ..Default::default()
    };
    assert!(batch.eval(&lp, &norm).is_err());
    // wrong logp shape
    assert!(matches!(
        batch.eval(&t2(&batch.logp, 3, 2), &cfg),
        Err(Error::Shape(_))
    ));
    // wrong number of truncation flags
    let mut b2 = batch.clone();
    b2.truncated = Some(vec![true]);
    assert!(matches!(b2.eval(&lp, &cfg), Err(Error::Shape(_))));
    // non-binary mask
    let mut b3 = batch.clone();
    b3.mask[0] = 0.5;
    assert!(matches!(b3.eval(&lp, &cfg), Err(Error::Invalid(_))));
    // mini-batch counts smaller than the micro-batch's own
    let lp32 = lp.clone();
    let old = lp32.clone();
    let adv = Tensor::new(&[1.0f64, -3.0], &Device::Cpu).unwrap();
    let mask = t2(&batch.mask, 2, 3);
    let inputs = LossInputs {
        logp: &lp32,
        old_logp: &old,
        ref_logp: None,
        advantages: &adv,
        mask: &mask,
        truncated: None,
        entropy: None,
        counts: Some(BatchCounts {
            sequences: 1,
            tokens: 3,
        }),
    };
    assert!(matches!(policy_loss(&inputs, &cfg), Err(Error::Invalid(_))));
    // bad clip range
    let bad = PolicyLossConfig {
        eps_low: 1.0,
        ..Default::default()
    };
    assert!(batch.eval(&lp, &bad).is_err());
}

#[test]
fn config_from_toml() {
    let cfg: PolicyLossConfig = toml::from_str(
        r#"
        eps_high = 0.28
        aggregation = "token-mean"
        ratio = "sequence"
        kl_estimator = "k2"
        "#,
    )
    .unwrap();
    assert_eq!(cfg.eps_high, 0.28);
    assert_eq!(cfg.eps_low, 0.2);
    assert_eq!(cfg.aggregation, LossAggregation::TokenMean);
    assert_eq!(cfg.ratio, RatioLevel::Sequence);
    assert_eq!(cfg.kl_estimator, KlEstimator::K2);
    let agg: PolicyLossConfig =
        toml::from_str("aggregation = \"seq-mean-token-sum-norm\"\nmax_response_len = 512")
            .unwrap();
    assert!(agg.validate().is_ok());
    let err = toml::from_str::<PolicyLossConfig>("eps = 0.2").unwrap_err();
    assert!(err.to_string().contains("eps"), "{err}");
}

#[test]
fn stats_merge_is_token_weighted() {
    let a = LossStats {
        clip_frac: 0.5,
        pg_loss: 1.0,
        kl: Some(1.0),
        counts: BatchCounts {
            sequences: 1,
            tokens: 1,
        },
        ..Default::default()
    };
    let b = LossStats {
        clip_frac: 0.0,
        pg_loss: 2.0,
        kl: Some(4.0),
        counts: BatchCounts {
            sequences: 1,
            tokens: 3,
        },
        ..Default::default()
    };
    let m = a.merge(&b);
    assert_close(m.clip_frac, 0.125, 1e-12, "clip_frac");
    assert_close(m.kl.unwrap(), 3.25, 1e-12, "kl");
    assert_close(m.pg_loss, 3.0, 1e-12, "pg_loss");
    assert_eq!(
        m.counts,
        BatchCounts {
            sequences: 2,
            tokens: 4
        }
    );
}
