//! Time one AdamW step at ~32M parameters: the fused optimizer vs candle-nn's `AdamW`.
//!
//! `cargo run --release -p augur-train --example adamw_bench [-- PARAMS_MILLIONS [STEPS]]`
//!
//! Parameters are 8 CPU f32 matrices; gradients are fixed random tensors inserted into a
//! `GradStore`, so only the optimizer is timed. The fused time includes `accumulate` (copying the
//! gradients into its buffers), i.e. it is the full cost of `backward_step` minus the backward.

use std::time::Instant;

use augur_train::optim::{AdamWConfig, FusedAdamW};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::Optimizer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let millions: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(32);
    let steps: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let n_vars = 8;
    let cols = 1024;
    let rows = (millions * 1_000_000).div_ceil(n_vars * cols);
    let dev = Device::Cpu;

    let make = || -> candle_core::Result<(Vec<Var>, GradStore)> {
        let mut vars = Vec::new();
        let mut grads = GradStore::default();
        for _ in 0..n_vars {
            let v = Var::from_tensor(&Tensor::randn(0f32, 0.02, (rows, cols), &dev)?)?;
            grads.insert(
                v.as_tensor(),
                Tensor::randn(0f32, 1e-3, (rows, cols), &dev)?.to_dtype(DType::F32)?,
            );
            vars.push(v);
        }
        Ok((vars, grads))
    };
    let total = n_vars * rows * cols;
    println!(
        "{total} parameters ({n_vars} x [{rows}, {cols}] f32, CPU), {steps} timed steps after 1 warmup, {} threads available",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // candle-nn AdamW
    let (vars, grads) = make()?;
    let mut reference = candle_nn::AdamW::new(vars, candle_nn::ParamsAdamW::default())?;
    reference.step(&grads)?;
    let t0 = Instant::now();
    for _ in 0..steps {
        reference.step(&grads)?;
    }
    let candle_s = t0.elapsed().as_secs_f64() / steps as f64;
    drop(reference);

    // fused AdamW, without and with global-norm clipping (the norm is computed either way, for
    // the NaN/Inf guard, so clipping only changes one multiplier)
    let mut fused_ms = Vec::new();
    for max_grad_norm in [None, Some(1.0)] {
        let (vars, grads) = make()?;
        let named = vars
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("w{i}"), v))
            .collect();
        let cfg = AdamWConfig {
            weight_decay: 0.01,
            max_grad_norm,
            ..Default::default()
        };
        let mut fused = FusedAdamW::new(named, cfg)?;
        fused.accumulate(&grads)?;
        fused.step(1e-3)?;
        let t0 = Instant::now();
        for _ in 0..steps {
            fused.accumulate(&grads)?;
            fused.step(1e-3)?;
        }
        fused_ms.push(t0.elapsed().as_secs_f64() / steps as f64 * 1e3);
    }

    println!("candle-nn AdamW      : {:8.1} ms/step", candle_s * 1e3);
    println!("fused AdamW          : {:8.1} ms/step", fused_ms[0]);
    println!("fused AdamW + clip   : {:8.1} ms/step", fused_ms[1]);
    println!(
        "speed-up (candle-nn / fused): {:.1}x",
        candle_s * 1e3 / fused_ms[0]
    );
    Ok(())
}
