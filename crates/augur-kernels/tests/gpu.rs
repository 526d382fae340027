//! The CUDA kernels against their CPU twins. They run only when this build has the `cuda`
//! feature and a GPU answers; otherwise each test says so on stderr and passes without checking.

use augur_kernels::{sample_last, token_logprob_entropy, RowRng, SamplingConfig};
use candle_core::{DType, Device, Tensor, Var};

fn gpu() -> Option<Device> {
    if !augur_kernels::CUDA_BUILD {
        eprintln!("skipped: built without --features cuda");
        return None;
    }
    match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("skipped: no CUDA device ({e})");
            None
        }
    }
}

fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            (RowRng {
                seed,
                stream: 1,
                step: i,
            }
            .uniform()
                * 2.0
                - 1.0)
                * scale
        })
        .collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    let a = a
        .to_device(&Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let b = b
        .to_device(&Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn logprob_entropy_and_gradient_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    // A Qwen-sized vocabulary, so the per-row reduction spans many blocks' worth of strides.
    let (n, v) = (24, 151_936);
    let x = values(n * v, 2, 8.0);
    let ids: Vec<u32> = (0..n as u32).map(|i| i * 6151 % v as u32).collect();
    let grad_w = Tensor::from_vec(values(n * 2, 3, 1.0), (n, 2), &Device::Cpu).unwrap();
    for dtype in [DType::F32, DType::BF16] {
        let cpu_logits = Tensor::from_vec(x.clone(), (n, v), &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let run = |dev: &Device| {
            let logits = Var::from_tensor(&cpu_logits.to_device(dev).unwrap()).unwrap();
            let t = Tensor::new(ids.as_slice(), dev).unwrap();
            let out = token_logprob_entropy(logits.as_tensor(), &t).unwrap();
            let loss = (&out * grad_w.to_device(dev).unwrap())
                .unwrap()
                .sum_all()
                .unwrap();
            let g = loss
                .backward()
                .unwrap()
                .get(logits.as_tensor())
                .unwrap()
                .clone();
            (out, g)
        };
        let (out_cpu, g_cpu) = run(&Device::Cpu);
        let (out_gpu, g_gpu) = run(&gpu);
        assert!(max_diff(&out_cpu, &out_gpu) < 1e-3, "{dtype:?} values");
        // bf16 gradients carry bf16 rounding (8 bits of mantissa) of values below 1.
        let tol = if dtype == DType::BF16 { 1e-2 } else { 1e-5 };
        assert!(max_diff(&g_cpu, &g_gpu) < tol, "{dtype:?} gradients");
    }
}

#[test]
fn sampling_matches_the_cpu_twin() {
    let Some(gpu) = gpu() else { return };
    let (b, v) = (64, 32_000);
    let x = values(b * v, 4, 10.0);
    let cpu_logits = Tensor::from_vec(x, (b, v), &Device::Cpu).unwrap();
    let gpu_logits = cpu_logits.to_device(&gpu).unwrap();
    let configs = [
        SamplingConfig {
            temperature: 0.0,
            ..Default::default()
        },
        SamplingConfig::default(),
        SamplingConfig {
            temperature: 0.7,
            top_k: 50,
            ..Default::default()
        },
        SamplingConfig {
            temperature: 1.0,
            top_p: 0.9,
            ..Default::default()
        },
        SamplingConfig {
            temperature: 0.9,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
        },
    ];
    for cfg in configs {
        let mut same = 0;
        let mut total = 0;
        for step in 0..8u64 {
            let rows: Vec<RowRng> = (0..b as u64)
                .map(|r| RowRng {
                    seed: 17,
                    stream: r,
                    step,
                })
                .collect();
            let c = sample_last(&cpu_logits, &cfg, &rows).unwrap();
            let g = sample_last(&gpu_logits, &cfg, &rows).unwrap();
            for (c, g) in c.iter().zip(&g) {
                total += 1;
                if c.token == g.token {
                    same += 1;
                    assert!(
                        (c.logprob - g.logprob).abs() < 1e-3,
                        "{cfg:?}: {c:?} vs {g:?}"
                    );
                }
            }
        }
        // Only a draw within float rounding of a token boundary may differ.
        assert!(
            same * 100 >= total * 99,
            "{cfg:?}: {same}/{total} identical draws"
        );
    }
}

#[test]
fn gpu_sampling_distribution_passes_chi_square() {
    let Some(gpu) = gpu() else { return };
    let v = 20;
    let x = values(v, 8, 2.0);
    let cfg = SamplingConfig {
        temperature: 0.8,
        top_p: 0.9,
        ..Default::default()
    };
    // 4096 rows of the same logits, one draw each, over 10 steps.
    let rows = 4096;
    let logits = Tensor::from_vec(x.repeat(rows), (rows, v), &gpu).unwrap();
    let mut counts = vec![0u64; v];
    for step in 0..10u64 {
        let streams: Vec<RowRng> = (0..rows as u64)
            .map(|r| RowRng {
                seed: 23,
                stream: r,
                step,
            })
            .collect();
        for s in sample_last(&logits, &cfg, &streams).unwrap() {
            counts[s.token as usize] += 1;
        }
    }
    // The expected frequencies: the CPU twin's kept set, weighted by exp(x/T).
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let w: Vec<f64> = x.iter().map(|&l| (((l - m) / 0.8) as f64).exp()).collect();
    let mut order: Vec<usize> = (0..v).collect();
    order.sort_by(|&a, &b| x[b].total_cmp(&x[a]));
    let z: f64 = w.iter().sum();
    let (mut cum, mut kept) = (0.0, vec![false; v]);
    for &i in &order {
        kept[i] = true;
        cum += w[i];
        if cum >= 0.9 * z {
            break;
        }
    }
    let mass: f64 = (0..v).filter(|&i| kept[i]).map(|i| w[i]).sum();
    let n = (rows * 10) as f64;
    let mut chi2 = 0.0;
    let mut dof = 0;
    for i in 0..v {
        if !kept[i] {
            assert_eq!(counts[i], 0, "token {i} is outside the nucleus");
            continue;
        }
        let e = w[i] / mass * n;
        chi2 += (counts[i] as f64 - e).powi(2) / e;
        dof += 1;
    }
    let bound = (dof - 1) as f64 + 3.1 * (2.0 * (dof - 1) as f64).sqrt() + 10.0;
    assert!(chi2 < bound, "chi2 {chi2} over {} dof", dof - 1);
}
