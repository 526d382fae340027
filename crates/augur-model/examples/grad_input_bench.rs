//! Time the backward through packed frozen weights (`g @ W`, [`LoraLinear::base_grad_input`])
//! alone, on SmolLM2-135M's shapes, so changes to that kernel can be measured in isolation.
//!
//! `cargo run --release -p augur-model --example grad_input_bench -- [ROWS] [REPS] [DTYPE]`
//!
//! `ROWS` (default 576: a GRPO micro-batch of 8 rows x 72 tokens) rows of `g` for the layer
//! shapes; the LM head gets `ROWS * 4 / 9` rows (the completion tokens that reach it). Random
//! weights; `DTYPE` `f32` (default) or `bf16` panels. Prints one JSON line per shape with the
//! median wall time of `REPS` (default 5) calls after one warm-up, the mean process CPU time per
//! call (steadier than wall time on a shared machine), and the GFLOP/s of the median.

use std::time::Instant;

use augur_model::linear::{BaseWeight, LoraLinear};
use augur_model::WeightDtype;
use candle_core::{Device, Tensor};

fn main() -> anyhow::Result<()> {
    augur_model::cpu_threads::configure();
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize, default: usize| -> anyhow::Result<usize> {
        Ok(args
            .get(i)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let (rows, reps) = (num(1, 576)?, num(2, 5)?.max(1));
    let dtype: WeightDtype = match args.get(3) {
        Some(s) => s.parse().map_err(|e| anyhow::anyhow!("DTYPE: {e}"))?,
        None => WeightDtype::F32,
    };
    let dev = Device::Cpu;
    // (name, rows of g, out features n, in features k): g [rows, n] @ W [n, k].
    let shapes = [
        ("qkv (fused)", rows, 960, 576),
        ("o_proj", rows, 576, 576),
        ("gate_up (fused)", rows, 3072, 576),
        ("down_proj", rows, 576, 1536),
        ("lm_head", rows * 4 / 9, 49152, 576),
    ];
    for (name, m, n, k) in shapes {
        let w = Tensor::randn(0f32, 0.05, (n, k), &dev)?;
        let mut linear = LoraLinear::new(BaseWeight::Dense(w), None)?;
        linear.pack(dtype)?;
        if !matches!(linear.base, BaseWeight::Packed { .. }) {
            anyhow::bail!("this CPU cannot pack {dtype:?} weights");
        }
        let g = Tensor::randn(0f32, 1.0, (m, n), &dev)?;
        linear.base_grad_input(&g)?;
        let cpu_before = cpu_seconds();
        let mut times = (0..reps)
            .map(|_| {
                let t = Instant::now();
                linear
                    .base_grad_input(&g)
                    .map(|_| t.elapsed().as_secs_f64())
            })
            .collect::<candle_core::Result<Vec<f64>>>()?;
        let cpu_per_call = (cpu_seconds() - cpu_before) / reps as f64;
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let gflops = 2.0 * (m * n * k) as f64 / median / 1e9;
        println!(
            "{}",
            serde_json::json!({"shape": name, "m": m, "n": n, "k": k, "dtype": format!("{dtype:?}"),
                "median_ms": median * 1e3, "cpu_ms_per_call": cpu_per_call * 1e3,
                "gflops": gflops})
        );
    }
    Ok(())
}

/// User + system CPU seconds of this process so far (all threads).
fn cpu_seconds() -> f64 {
    // SAFETY: `getrusage` only writes the zero-initialised struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}
