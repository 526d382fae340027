//! Rows continuing shared prefixes (a GRPO group's completions after one prompt) give the
//! same logits and the same adapter gradients as the rows run in full.

mod common;

use augur_model::{DecoderModel, ForwardOpts, Grad, LogitsAt, StepInput};
use candle_core::{DType, Device, Tensor, Var};
use common::shared_rows::{self, full_rows, prefixed_rows, ROWS, WIDTH};
use common::*;

fn opts(grad: Grad) -> ForwardOpts {
    ForwardOpts {
        adapters: true,
        grad,
        logits: LogitsAt::Tail(WIDTH),
    }
}

/// `[rows, WIDTH, V]` logits of the continuation tokens (right-aligned), both ways.
fn both_ways(model: &DecoderModel, grad: Grad) -> (Tensor, Tensor) {
    let full = model.forward(&full_rows(), None, opts(grad)).unwrap();
    let (prefixes, of_row, input) = prefixed_rows();
    let shared = model
        .forward_with_prefixes(&prefixes, &of_row, &input, opts(grad))
        .unwrap();
    (full, shared)
}

/// 1 where a row has a continuation token, 0 on the padding in front of shorter ones.
fn continuation_mask(vocab: usize, dtype: DType) -> Tensor {
    let mask: Vec<f32> = ROWS
        .iter()
        .flat_map(|(_, c)| (0..WIDTH).map(move |j| f32::from(j >= WIDTH - c.len())))
        .collect();
    Tensor::from_vec(mask, (ROWS.len(), WIDTH, 1), &Device::Cpu)
        .unwrap()
        .broadcast_as((ROWS.len(), WIDTH, vocab))
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// B of every adapter: random, non-zero.
fn adapted(arch: &str, dtype: DType) -> DecoderModel {
    shared_rows::adapted(arch, dtype, |_, var| {
        Tensor::randn(0f32, 0.2, var.shape(), &Device::Cpu).unwrap()
    })
}

#[test]
fn shared_prefix_logits_equal_full_rows() {
    for arch in ["llama", "qwen2", "qwen3"] {
        let model = adapted(arch, DType::F32);
        let mask = continuation_mask(model.cfg.vocab_size, DType::F32);
        for grad in [Grad::Off, Grad::Tracked] {
            let (full, shared) = both_ways(&model, grad);
            let diff = max_abs_diff(&(full * &mask).unwrap(), &(shared * &mask).unwrap());
            assert!(diff < 1e-4, "{arch} {grad:?}: max |Δlogit| {diff}");
        }
    }
}

#[test]
fn shared_prefix_gradients_equal_full_rows() {
    for arch in ["llama", "qwen2", "qwen3"] {
        let model = adapted(arch, DType::F64);
        let vocab = model.cfg.vocab_size;
        let proj = (Tensor::randn(0f64, 1.0, (ROWS.len(), WIDTH, vocab), &Device::Cpu).unwrap()
            * continuation_mask(vocab, DType::F64))
        .unwrap();
        let (full, shared) = both_ways(&model, Grad::Tracked);
        let grads = |logits: Tensor| {
            (logits * &proj)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        };
        let (g_full, g_shared) = (grads(full), grads(shared));
        let vars: Vec<(String, Var)> = model.lora_vars();
        for (name, var) in &vars {
            let a = g_full.get(var.as_tensor()).expect("gradient, full rows");
            let b = g_shared
                .get(var.as_tensor())
                .expect("gradient, shared prefix");
            let scale = a
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            let diff = max_abs_diff(a, b) as f64;
            assert!(scale > 0.0, "{arch} {name}: zero gradient");
            assert!(
                diff < 1e-9 * scale.max(1.0) + 1e-6 * scale,
                "{arch} {name}: |Δgrad| {diff} of {scale}"
            );
        }
    }
}

#[test]
fn prefix_index_out_of_range_is_an_error() {
    let model = adapted("llama", DType::F32);
    let dev = Device::Cpu;
    let prefixes = StepInput::left_padded(&[vec![5, 9]], 0, &dev).unwrap();
    let input = StepInput::left_padded_from(&[vec![3]], &[2], 0, &dev).unwrap();
    let err = model
        .forward_with_prefixes(&prefixes, &[1], &input, opts(Grad::Off))
        .unwrap_err();
    assert!(err.to_string().contains("prefix index"), "{err}");
}
