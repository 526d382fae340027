//! Full fine-tuning (`DecoderModel::make_trainable`): the model computes the same logits with
//! trainable weights, its variables are named like the exported HF tensors, every weight gets
//! a gradient, and the gradients match finite differences.

mod common;

use augur_model::{ForwardOpts, Grad, LogitsAt, StepInput};
use candle_core::{DType, Device, Tensor};
use common::*;

fn batch() -> StepInput {
    StepInput::left_padded(&[vec![5, 9, 200, 17, 3], vec![44, 12]], 0, &Device::Cpu).unwrap()
}

fn opts(grad: Grad) -> ForwardOpts {
    ForwardOpts {
        adapters: true,
        grad,
        logits: LogitsAt::All,
    }
}

#[test]
fn trainable_weights_keep_the_logits_and_the_hf_names() {
    for arch in ["llama", "qwen2", "qwen3"] {
        let mut model = fixture_model(arch, DType::F32);
        let frozen = model.forward(&batch(), None, opts(Grad::Tracked)).unwrap();
        let sampled = model.forward(&batch(), None, opts(Grad::Off)).unwrap();
        let params = model.base_param_count();
        let vars = model.make_trainable().unwrap();
        for grad in [Grad::Tracked, Grad::Off] {
            let want = if grad == Grad::Off { &sampled } else { &frozen };
            let got = model.forward(&batch(), None, opts(grad)).unwrap();
            let d = max_abs_diff(want, &got);
            assert!(d < 1e-4, "{arch} {grad:?}: logits moved by {d}");
        }
        // Named like the exported tensors (a tied head is the embedding), every parameter once.
        let mut names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        let merged = model.merged_tensors().unwrap();
        let mut want: Vec<&str> = merged.keys().map(String::as_str).collect();
        want.sort_unstable();
        assert_eq!(names, want, "{arch}");
        let count: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();
        assert_eq!(count, params, "{arch}");
        // An update to a variable is what the model computes with (no copy to sync).
        let (_, embed) = &vars[0];
        embed
            .set(&Tensor::zeros(embed.shape(), DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        let zeroed = model.forward(&batch(), None, opts(Grad::Off)).unwrap();
        assert!(max_abs_diff(&sampled, &zeroed) > 1e-3, "{arch}");
        assert!(model.make_trainable().is_ok(), "{arch}: twice is harmless");
    }
}

/// A scalar loss with a fixed random projection of the real positions' logits.
fn loss(model: &augur_model::DecoderModel, proj: &Tensor) -> Tensor {
    let logits = model.forward(&batch(), None, opts(Grad::Tracked)).unwrap();
    (logits * proj).unwrap().sum_all().unwrap()
}

#[test]
fn every_weight_gets_a_gradient_matching_finite_differences() {
    for arch in ["llama", "qwen2", "qwen3"] {
        let mut model = fixture_model(arch, DType::F64);
        let vars = model.make_trainable().unwrap();
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
        for (name, var) in &vars {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{arch} {name}: no gradient"));
            let norm = g.sqr().unwrap().sum_all().unwrap();
            assert!(
                norm.to_scalar::<f64>().unwrap() > 0.0,
                "{arch} {name}: zero"
            );
        }
        // Central differences on entries of each kind of weight the architecture has.
        let hidden = model.cfg.hidden_size;
        let last = model.cfg.num_layers - 1;
        let picks = [
            "model.embed_tokens.weight".to_string(),
            "model.layers.0.input_layernorm.weight".into(),
            "model.layers.0.self_attn.q_proj.weight".into(),
            "model.layers.0.self_attn.q_proj.bias".into(),
            "model.layers.0.self_attn.k_norm.weight".into(),
            format!("model.layers.{last}.mlp.down_proj.weight"),
            format!("model.layers.{last}.post_attention_layernorm.weight"),
            "model.norm.weight".into(),
            "lm_head.weight".into(),
        ];
        let mut checked = 0;
        for (name, var) in vars.iter().filter(|(n, _)| picks.contains(n)) {
            let g = grads.get(var.as_tensor()).unwrap();
            let g = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let base = var.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            // Embedding: entries of rows the batch looks up (token 5, token 12).
            let entries = match name.as_str() {
                "model.embed_tokens.weight" => vec![5 * hidden, 5 * hidden + 3, 12 * hidden + 1],
                _ => vec![0, base.len() / 2, base.len() - 1],
            };
            for j in entries {
                let eps = 1e-5;
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
                let scale = fd.abs().max(g[j].abs()).max(1e-3);
                assert!(
                    (fd - g[j]).abs() < 1e-5 * scale,
                    "{arch} {name}[{j}]: analytic {} vs finite-difference {fd}",
                    g[j]
                );
                checked += 1;
            }
        }
        // llama: 6 kinds; qwen2 adds q_proj.bias and an untied lm_head; qwen3 adds k_norm.
        let kinds = match arch {
            "qwen2" => 8,
            "qwen3" => 7,
            _ => 6,
        };
        assert_eq!(checked, 3 * kinds, "{arch}");
    }
}
