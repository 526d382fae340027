//! Activation checkpointing (`forward_checkpointed` + `LayerTape::backward`) gives the plain
//! forward's value and the plain backward's adapter gradients, with and without shared
//! prefixes, for every fixture architecture; and its gradients match finite differences.

mod common;

use augur_model::{DecoderModel, ForwardOpts, Grad, LogitsAt, StepInput};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use common::shared_rows::{self, full_rows, prefixed_rows, WIDTH};

/// B of every adapter: deterministic and non-zero.
fn adapted(arch: &str, dtype: DType) -> DecoderModel {
    shared_rows::adapted(arch, dtype, |i, var| {
        let v: Vec<f64> = (0..var.elem_count())
            .map(|j| ((i * 31 + j * 17) % 23) as f64 / 23.0 - 0.5)
            .collect();
        (Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap() * 0.4).unwrap()
    })
}

/// The batch either as full rows (prompt + continuation) or as continuations of the shared
/// prompts (`StepInput` of the prompts and each row's prompt index).
struct Batch {
    input: StepInput,
    prefixes: Option<(StepInput, Vec<usize>)>,
}

fn batch(shared: bool) -> Batch {
    if !shared {
        return Batch {
            input: full_rows(),
            prefixes: None,
        };
    }
    let (prefixes, of_row, input) = prefixed_rows();
    Batch {
        input,
        prefixes: Some((prefixes, of_row)),
    }
}

fn opts() -> ForwardOpts {
    ForwardOpts {
        adapters: true,
        grad: Grad::Tracked,
        logits: LogitsAt::Tail(WIDTH),
    }
}

/// A scalar that depends on every logit of the tail: `Σ logits · w` for fixed weights `w`.
fn loss_of(logits: &Tensor) -> Tensor {
    let n = logits.elem_count();
    let w: Vec<f64> = (0..n)
        .map(|i| ((i * 7919) % 101) as f64 / 101.0 - 0.5)
        .collect();
    let w = Tensor::from_vec(w, logits.shape(), logits.device())
        .unwrap()
        .to_dtype(logits.dtype())
        .unwrap();
    (logits * w).unwrap().sum_all().unwrap()
}

/// The loss and the adapters' gradients `name -> values`, plain or checkpointed.
fn loss_and_grads(
    model: &DecoderModel,
    b: &Batch,
    checkpointed: bool,
) -> (f64, Vec<(String, Vec<f64>)>) {
    let mut acc: Vec<(String, Vec<f64>)> = model
        .lora_vars()
        .into_iter()
        .map(|(name, v)| (name, vec![0.0; v.elem_count()]))
        .collect();
    let vars = model.lora_vars();
    let mut add = |store: &GradStore| -> Result<(), augur_model::ModelError> {
        for ((_, var), (_, sum)) in vars.iter().zip(acc.iter_mut()) {
            if let Some(g) = store.get(var.as_tensor()) {
                let g = g.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
                sum.iter_mut().zip(g).for_each(|(s, g)| *s += g);
            }
        }
        Ok(())
    };
    let prefixes = b.prefixes.as_ref().map(|(p, of)| (p, of.as_slice()));
    let loss = if checkpointed {
        let (out, tape) = model
            .forward_checkpointed(&b.input, prefixes, opts())
            .unwrap();
        let loss = loss_of(&out);
        let grads = loss.backward().unwrap();
        add(&grads).unwrap();
        tape.backward(&grads, &mut add).unwrap();
        loss
    } else {
        let out = match prefixes {
            Some((p, of_row)) => model.forward_with_prefixes(p, of_row, &b.input, opts()),
            None => model.forward(&b.input, None, opts()),
        }
        .unwrap();
        let loss = loss_of(&out);
        add(&loss.backward().unwrap()).unwrap();
        loss
    };
    let loss = loss
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    (loss, acc)
}

#[test]
fn checkpointed_backward_equals_the_plain_backward() {
    for arch in ["llama", "qwen2", "qwen3"] {
        let model = adapted(arch, DType::F32);
        for shared in [false, true] {
            let b = batch(shared);
            let (loss, plain) = loss_and_grads(&model, &b, false);
            let (loss_ckpt, ckpt) = loss_and_grads(&model, &b, true);
            assert_eq!(loss, loss_ckpt, "{arch} shared={shared}: loss");
            let mut nonzero = 0;
            for ((name, p), (_, c)) in plain.iter().zip(&ckpt) {
                let scale = p.iter().fold(0f64, |m, v| m.max(v.abs()));
                let diff = p.iter().zip(c).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
                assert!(
                    diff <= 1e-5 * scale.max(1e-12),
                    "{arch} shared={shared} {name}: max |plain - checkpointed| {diff}, scale {scale}"
                );
                nonzero += usize::from(scale > 0.0);
            }
            // Every adapter (A and B of each projection of each block) gets a gradient.
            assert_eq!(nonzero, plain.len(), "{arch} shared={shared}");
        }
    }
}

/// Central differences of the plain forward's loss in f64 against the checkpointed gradient,
/// on a few entries of adapters in the first and last blocks.
#[test]
fn checkpointed_gradients_match_finite_differences() {
    let model = adapted("qwen2", DType::F64);
    let b = batch(true);
    let (_, grads) = loss_and_grads(&model, &b, true);
    let vars = model.lora_vars();
    let picks = [
        "layers.0.self_attn.q_proj.lora_A",
        "layers.0.self_attn.k_proj.lora_B",
        "layers.0.mlp.down_proj.lora_A",
        "layers.1.self_attn.v_proj.lora_B",
        "layers.1.mlp.gate_proj.lora_A",
    ];
    let h = 1e-5;
    for pick in picks {
        let at = vars.iter().position(|(n, _)| n.contains(pick)).unwrap();
        let var: &Var = &vars[at].1;
        let original = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        for i in [0, original.len() / 2, original.len() - 1] {
            let loss_at = |delta: f64| {
                let mut v = original.clone();
                v[i] += delta;
                var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                loss_and_grads(&model, &b, false).0
            };
            let fd = (loss_at(h) - loss_at(-h)) / (2.0 * h);
            loss_at(0.0);
            let g = grads[at].1[i];
            assert!(
                (fd - g).abs() <= 1e-6 * (1.0 + g.abs()),
                "{pick}[{i}]: finite difference {fd}, checkpointed gradient {g}"
            );
        }
    }
}
