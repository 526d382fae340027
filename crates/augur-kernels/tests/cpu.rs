//! The CPU twins against naive references: f64 log-softmax for the logprob/entropy op (values,
//! gradients, finite differences), and a sort-based truncated distribution for the sampler
//! (chi-square over many Philox draws).

use augur_kernels::{
    row_stats, sample_last, sample_row, token_logprob_entropy, RowRng, SamplingConfig,
};
use candle_core::{DType, Device, Tensor, Var};

fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let u = RowRng {
                seed,
                stream: 0,
                step: i,
            }
            .uniform();
            (u * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Naive f64 log-softmax of one row: (logprob of every token, entropy).
fn naive(row: &[f32]) -> (Vec<f64>, f64) {
    let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
    let z: f64 = row.iter().map(|&x| (x as f64 - m).exp()).sum();
    let lp: Vec<f64> = row.iter().map(|&x| x as f64 - m - z.ln()).collect();
    let h = -lp
        .iter()
        .filter(|l| l.is_finite())
        .map(|l| l.exp() * l)
        .sum::<f64>();
    (lp, h)
}

#[test]
fn logprob_and_entropy_match_a_naive_log_softmax() {
    let (n, v) = (6, 37);
    let mut x = values(n * v, 1, 6.0);
    x[5] = f32::NEG_INFINITY; // a masked token in row 0
    let targets: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 1) % v as u32).collect();
    let logits = Tensor::from_vec(x.clone(), (n, v), &Device::Cpu).unwrap();
    let ids = Tensor::new(targets.as_slice(), &Device::Cpu).unwrap();
    let out = token_logprob_entropy(&logits, &ids)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for r in 0..n {
        let (lp, h) = naive(&x[r * v..(r + 1) * v]);
        let want = lp[targets[r] as usize];
        assert!(
            (out[r][0] as f64 - want).abs() < 1e-5,
            "row {r}: {} vs {want}",
            out[r][0]
        );
        assert!(
            (out[r][1] as f64 - h).abs() < 1e-5,
            "row {r}: {} vs {h}",
            out[r][1]
        );
    }
}

/// The shared online logsumexp against the naive f64 one, with masked (-inf) logits first (where
/// a running max still at -inf would give -inf - -inf = NaN), in the middle and last.
#[test]
fn row_stats_match_a_naive_logsumexp_with_masked_logits() {
    let inf = f32::NEG_INFINITY;
    for row in [
        vec![inf, inf, 1.5, -0.25, 3.0],
        vec![0.5, inf, 2.0, inf, -1.0],
        vec![2.0, 1.0, 0.0, inf],
        values(64, 4, 8.0),
    ] {
        let (lse, mean) = row_stats(&row);
        let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
        let z: f64 = row.iter().map(|&x| (x as f64 - m).exp()).sum();
        let want_lse = m + z.ln();
        let want_mean: f64 = row
            .iter()
            .filter(|x| x.is_finite())
            .map(|&x| (x as f64 - want_lse).exp() * x as f64)
            .sum();
        assert!(
            (lse as f64 - want_lse).abs() < 1e-5,
            "{row:?}: lse {lse} vs {want_lse}"
        );
        assert!(
            (mean as f64 - want_mean).abs() < 1e-5,
            "{row:?}: mean {mean} vs {want_mean}"
        );
    }
}

#[test]
fn bf16_logits_are_upcast_and_give_f32_results() {
    let (n, v) = (3, 20);
    let x = values(n * v, 2, 3.0);
    let logits = Tensor::from_vec(x, (n, v), &Device::Cpu)
        .unwrap()
        .to_dtype(DType::BF16)
        .unwrap();
    let ids = Tensor::new(&[0u32, 19, 7], &Device::Cpu).unwrap();
    let out = token_logprob_entropy(&logits, &ids).unwrap();
    assert_eq!(out.dtype(), DType::F32);
    let exact: Vec<f32> = logits
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let got = out.to_vec2::<f32>().unwrap();
    for (r, &y) in [0usize, 19, 7].iter().enumerate() {
        let (lp, h) = naive(&exact[r * v..(r + 1) * v]);
        assert!((got[r][0] as f64 - lp[y]).abs() < 1e-5);
        assert!((got[r][1] as f64 - h).abs() < 1e-5);
    }
}

/// Loss = Σ a·logprob + b·entropy; its gradient against central finite differences.
#[test]
fn gradient_matches_finite_differences() {
    let (n, v) = (3, 9);
    let base = values(n * v, 3, 2.0);
    let targets = [4u32, 0, 8];
    let ids = Tensor::new(&targets, &Device::Cpu).unwrap();
    let (a, b) = ([1.0f64, -0.5, 2.0], [0.3f64, 1.2, -0.7]);
    let loss_of = |xs: &[f32]| -> f64 {
        (0..n)
            .map(|r| {
                let (lp, h) = naive(&xs[r * v..(r + 1) * v]);
                a[r] * lp[targets[r] as usize] + b[r] * h
            })
            .sum()
    };
    let x = Var::from_vec(base.clone(), (n, v), &Device::Cpu).unwrap();
    let out = token_logprob_entropy(x.as_tensor(), &ids).unwrap();
    let w = Tensor::new(
        &[
            [a[0] as f32, b[0] as f32],
            [a[1] as f32, b[1] as f32],
            [a[2] as f32, b[2] as f32],
        ],
        &Device::Cpu,
    )
    .unwrap();
    let loss = (out * w).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let g: Vec<f32> = grads
        .get(x.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let eps = 1e-3f32;
    for i in 0..n * v {
        let (mut up, mut down) = (base.clone(), base.clone());
        up[i] += eps;
        down[i] -= eps;
        let fd = (loss_of(&up) - loss_of(&down)) / (2.0 * eps as f64);
        assert!(
            (fd - g[i] as f64).abs() < 2e-3,
            "x[{i}]: fd {fd} vs {}",
            g[i]
        );
    }
}

#[test]
fn bad_targets_and_shapes_are_errors() {
    let logits = Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap();
    let err = token_logprob_entropy(&logits, &Tensor::new(&[0u32, 4], &Device::Cpu).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("target id 4") && err.contains("vocabulary of 4"),
        "{err}"
    );
    assert!(token_logprob_entropy(&logits, &Tensor::new(&[0u32], &Device::Cpu).unwrap()).is_err());
    assert!(
        token_logprob_entropy(&logits, &Tensor::new(&[0i64, 1], &Device::Cpu).unwrap()).is_err()
    );
}

/// The truncated distribution the module docs define, by sorting (f64).
fn reference_distribution(x: &[f32], cfg: &SamplingConfig) -> Vec<f64> {
    let t = cfg.temperature as f64;
    let m = x.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
    let w: Vec<f64> = x.iter().map(|&l| ((l as f64 - m) / t).exp()).collect();
    let z: f64 = w.iter().sum();
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[b].total_cmp(&x[a]));
    let mut floor = f64::NEG_INFINITY;
    if cfg.top_k > 0 && cfg.top_k < x.len() {
        floor = floor.max(x[order[cfg.top_k - 1]] as f64);
    }
    if cfg.top_p < 1.0 {
        let mut cum = 0.0;
        for &i in &order {
            cum += w[i];
            if cum >= cfg.top_p as f64 * z {
                floor = floor.max(x[i] as f64);
                break;
            }
        }
    }
    if cfg.min_p > 0.0 {
        floor = floor.max(m + t * (cfg.min_p as f64).ln());
    }
    let kept: Vec<f64> = (0..x.len())
        .map(|i| if x[i] as f64 >= floor { w[i] } else { 0.0 })
        .collect();
    let mass: f64 = kept.iter().sum();
    kept.iter().map(|k| k / mass).collect()
}

/// Pearson chi-square of `draws` Philox-seeded samples against the reference; cells with an
/// expected count under 5 are pooled. Returns (statistic, degrees of freedom).
fn chi_square(x: &[f32], cfg: &SamplingConfig, draws: u64) -> (f64, usize) {
    let p = reference_distribution(x, cfg);
    let mut counts = vec![0u64; x.len()];
    for step in 0..draws {
        let s = sample_row(
            x,
            cfg,
            &RowRng {
                seed: 11,
                stream: 5,
                step,
            },
        );
        assert!(
            p[s.token as usize] > 0.0,
            "token {} is outside the kept set",
            s.token
        );
        counts[s.token as usize] += 1;
    }
    let (mut chi2, mut cells, mut pooled_e, mut pooled_o) = (0.0, 0, 0.0, 0.0);
    for (i, &c) in counts.iter().enumerate() {
        let e = p[i] * draws as f64;
        if e == 0.0 {
            continue;
        }
        if e < 5.0 {
            pooled_e += e;
            pooled_o += c as f64;
        } else {
            chi2 += (c as f64 - e).powi(2) / e;
            cells += 1;
        }
    }
    if pooled_e > 0.0 {
        chi2 += (pooled_o - pooled_e).powi(2) / pooled_e;
        cells += 1;
    }
    (chi2, cells - 1)
}

#[test]
fn sampling_follows_the_truncated_distribution() {
    let x = values(50, 4, 3.0);
    let configs = [
        SamplingConfig::default(),
        SamplingConfig {
            temperature: 0.7,
            ..Default::default()
        },
        SamplingConfig {
            top_k: 5,
            ..Default::default()
        },
        SamplingConfig {
            top_p: 0.6,
            ..Default::default()
        },
        SamplingConfig {
            min_p: 0.2,
            temperature: 1.3,
            ..Default::default()
        },
        SamplingConfig {
            temperature: 0.8,
            top_k: 20,
            top_p: 0.9,
            min_p: 0.05,
        },
    ];
    for cfg in configs {
        let (chi2, dof) = chi_square(&x, &cfg, 40_000);
        // 0.999 quantile of chi-square: about dof + 3.1·sqrt(2·dof) + 10 is a safe bound here.
        let bound = dof as f64 + 3.1 * (2.0 * dof as f64).sqrt() + 10.0;
        assert!(
            chi2 < bound,
            "{cfg:?}: chi2 {chi2} over {dof} dof (bound {bound})"
        );
    }
}

#[test]
fn greedy_top_k_1_and_logprobs() {
    let x = values(64, 5, 4.0);
    let best = (0..64).max_by(|&a, &b| x[a].total_cmp(&x[b])).unwrap() as u32;
    let (lp, _) = naive(&x);
    for cfg in [
        SamplingConfig {
            temperature: 0.0,
            ..Default::default()
        },
        SamplingConfig {
            top_k: 1,
            ..Default::default()
        },
        SamplingConfig {
            min_p: 1.0,
            ..Default::default()
        },
    ] {
        for step in 0..20 {
            let s = sample_row(
                &x,
                &cfg,
                &RowRng {
                    seed: 1,
                    stream: 0,
                    step,
                },
            );
            assert_eq!(s.token, best, "{cfg:?}");
            assert!((s.logprob as f64 - lp[best as usize]).abs() < 1e-5);
        }
    }
    // The logprob is the raw temperature-1 one, whatever the truncation.
    let cfg = SamplingConfig {
        temperature: 0.5,
        top_k: 10,
        ..Default::default()
    };
    let s = sample_row(
        &x,
        &cfg,
        &RowRng {
            seed: 9,
            stream: 1,
            step: 3,
        },
    );
    assert!((s.logprob as f64 - lp[s.token as usize]).abs() < 1e-5);
}

#[test]
fn batched_sampling_is_reproducible_and_per_row() {
    let (b, v) = (4, 100);
    let x = values(b * v, 6, 2.0);
    let logits = Tensor::from_vec(x.clone(), (b, v), &Device::Cpu).unwrap();
    let rows: Vec<RowRng> = (0..b as u64)
        .map(|r| RowRng {
            seed: 3,
            stream: r,
            step: 0,
        })
        .collect();
    let cfg = SamplingConfig {
        temperature: 1.0,
        top_p: 0.95,
        ..Default::default()
    };
    let first = sample_last(&logits, &cfg, &rows).unwrap();
    assert_eq!(first, sample_last(&logits, &cfg, &rows).unwrap());
    for (r, s) in first.iter().enumerate() {
        assert_eq!(*s, sample_row(&x[r * v..(r + 1) * v], &cfg, &rows[r]));
    }
    let bad = SamplingConfig {
        top_p: 0.0,
        ..Default::default()
    };
    assert!(sample_last(&logits, &bad, &rows)
        .unwrap_err()
        .to_string()
        .contains("top_p"));
    assert!(sample_last(&logits, &cfg, &rows[..2]).is_err());
}
