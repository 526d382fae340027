//! LoRA behaviour: a zero adapter changes nothing, the adapter switch works, every
//! trainable tensor gets a gradient, and gradients match finite differences.

mod common;

use augur_model::{ForwardOpts, Grad, LogitsAt, LoraConfig, StepInput, Target};
use candle_core::{DType, Device, Tensor, Var};
use common::*;

fn batch() -> StepInput {
    StepInput::left_padded(&[vec![5, 9, 200, 17, 3], vec![44, 12]], 0, &Device::Cpu).unwrap()
}

fn train_opts(adapters: bool) -> ForwardOpts {
    ForwardOpts {
        adapters,
        grad: Grad::Tracked,
        logits: LogitsAt::All,
    }
}

#[test]
fn zero_b_equals_base_and_switch_disables_adapter() {
    for arch in ["llama", "qwen2", "qwen3"] {
        let mut model = fixture_model(arch, DType::F32);
        let base = model.forward(&batch(), None, train_opts(true)).unwrap();
        attach_lora_everywhere(&mut model, 4, 1);
        let with_zero_b = model.forward(&batch(), None, train_opts(true)).unwrap();
        assert_eq!(
            max_abs_diff(&base, &with_zero_b),
            0.0,
            "{arch}: B = 0 must leave logits unchanged"
        );
        for (name, var) in model.lora_vars() {
            if name.ends_with("lora_B.weight") {
                var.set(&Tensor::randn(0f32, 0.1, var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
            }
        }
        let adapted = model.forward(&batch(), None, train_opts(true)).unwrap();
        assert!(
            max_abs_diff(&base, &adapted) > 1e-3,
            "{arch}: a non-zero B must change logits"
        );
        let reference = model.forward(&batch(), None, train_opts(false)).unwrap();
        assert_eq!(
            max_abs_diff(&base, &reference),
            0.0,
            "{arch}: adapters off must give the base model"
        );
    }
}

/// A scalar loss with a fixed random projection so every logit matters.
fn loss(model: &augur_model::DecoderModel, proj: &Tensor) -> Tensor {
    let logits = model.forward(&batch(), None, train_opts(true)).unwrap();
    (logits * proj).unwrap().sum_all().unwrap()
}

#[test]
fn every_adapter_gets_a_gradient_matching_finite_differences() {
    for arch in ["llama", "qwen2", "qwen3"] {
        check_gradients(arch);
    }
}

fn check_gradients(arch: &str) {
    let mut model = fixture_model(arch, DType::F64);
    attach_lora_everywhere(&mut model, 2, 7);
    let vars = model.lora_vars();
    for (name, var) in &vars {
        if name.ends_with("lora_B.weight") {
            var.set(&Tensor::randn(0f64, 0.2, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
    // Padded query positions are excluded, as every training loss masks them.
    let real = Tensor::new(
        &[[1f64, 1., 1., 1., 1.], [0., 0., 0., 1., 1.]],
        &Device::Cpu,
    )
    .unwrap();
    let proj = Tensor::randn(0f64, 1.0, (2, 5, model.cfg.vocab_size), &Device::Cpu)
        .unwrap()
        .broadcast_mul(&real.unsqueeze(2).unwrap())
        .unwrap();
    let grads = loss(&model, &proj).backward().unwrap();
    assert_eq!(vars.len(), 2 * 7 * model.cfg.num_layers);
    for (name, var) in &vars {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(norm > 0.0, "{name}: zero gradient");
    }
    // Central differences on a few entries of an attention and an MLP adapter.
    let picks = [0usize, 3, 2 * 7 * model.cfg.num_layers - 1];
    let eps = 1e-5;
    for &i in &picks {
        let (name, var) = &vars[i];
        let g = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let base = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        for &j in &[0usize, base.len() / 2, base.len() - 1] {
            let at = |delta: f64| -> f64 {
                let mut w = base.clone();
                w[j] += delta;
                var.set(&Tensor::from_vec(w, var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                loss(&model, &proj).to_scalar::<f64>().unwrap()
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * eps);
            var.set(&Tensor::from_vec(base.clone(), var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            let rel = (fd - g[j]).abs() / fd.abs().max(g[j].abs()).max(1e-8);
            assert!(
                rel < 1e-5,
                "{arch} {name}[{j}]: analytic {} vs finite-difference {fd} (rel {rel})",
                g[j]
            );
        }
    }
}

/// The frozen base weights must not receive gradients (they are not variables),
/// while gradients still flow through them to the adapters of earlier layers.
#[test]
fn gradients_reach_first_layer_through_frozen_layers() {
    let mut model = fixture_model("llama", DType::F32);
    model
        .attach_lora(&LoraConfig {
            rank: 2,
            alpha: 2.0,
            targets: vec![Target::QProj],
            seed: 3,
        })
        .unwrap();
    let vars = model.lora_vars();
    assert_eq!(vars.len(), 2 * model.cfg.num_layers);
    let proj = Tensor::randn(0f32, 1.0, (2, 5, model.cfg.vocab_size), &Device::Cpu).unwrap();
    let grads = loss(&model, &proj).backward().unwrap();
    let first_a: &Var = &vars[0].1;
    assert!(vars[0].0.contains("layers.0.self_attn.q_proj.lora_A"));
    // B = 0 at init: A's gradient is zero, B's is not.
    let gb = grads
        .get(vars[1].1.as_tensor())
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(gb > 0.0);
    assert!(grads.get(first_a.as_tensor()).is_some());
}
