//! `[train] packing`: examples packed end to end into shared rows get the same per-example
//! losses, and the same LoRA gradients, as one example per row (tiny Llama fixture); and the
//! fused LM-head loss the SFT step trains with equals the whole-logits one.

use std::path::PathBuf;

use augur_model::weights::SafetensorsSource;
use augur_model::{BuildOptions, DecoderModel, Grad, LoraConfig, ModelConfig, Target};
use augur_train::sft::data::Example;
use augur_train::sft::loss::{
    batch, example_nll_sums, masked_nll_tokens, target_logits, target_nll,
};
use augur_train::sft::packing::pack_rows;
use candle_core::{Device, Tensor};

fn model() -> DecoderModel {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity/llama");
    let cfg = ModelConfig::from_hf_file(&dir.join("config.json")).unwrap();
    let mut src = SafetensorsSource::open_dir(&dir, &Device::Cpu).unwrap();
    let mut model = DecoderModel::build(cfg, &mut src, &BuildOptions::default()).unwrap();
    model
        .attach_lora(&LoraConfig {
            rank: 2,
            alpha: 4.0,
            targets: Target::ALL.to_vec(),
            seed: 3,
        })
        .unwrap();
    // Non-zero B so the adapters matter (and get gradients through every layer).
    for (name, var) in model.lora_vars() {
        if name.ends_with("lora_B.weight") {
            var.set(&Tensor::randn(0f32, 0.2, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
    model
}

/// Examples of `prompt + completion` tokens (ids from a fixed pseudo-random walk).
fn examples() -> Vec<Example> {
    let shapes = [(3, 2), (5, 4), (2, 1), (6, 3), (1, 5), (4, 2)];
    let mut x = 17u32;
    shapes
        .iter()
        .map(|&(prompt, completion)| {
            let ids: Vec<u32> = (0..prompt + completion)
                .map(|_| {
                    x = (x * 73 + 41) % 251;
                    x + 3
                })
                .collect();
            let trainable = (0..ids.len()).map(|i| i >= prompt).collect();
            Example {
                ids,
                trainable,
                truncated: false,
            }
        })
        .collect()
}

/// How the per-token loss is computed from the model.
#[derive(Clone, Copy, Debug)]
enum Head {
    /// Whole `[B, width, V]` logits and the composite ops.
    Logits,
    /// `target_nll`: the fused LM-head op on the target positions (CPU f32).
    Fused,
}

/// Each example's mean token loss, and the LoRA gradients of the loss sum (when tracked).
type LossesAndGrads = (Vec<f64>, Option<Vec<Tensor>>);

/// Mean token loss of each example (in `order`'s order) and the loss sum's LoRA gradients.
fn losses_and_grads(
    model: &DecoderModel,
    rows: &[Vec<&Example>],
    packed: bool,
    grad: Grad,
) -> LossesAndGrads {
    losses_and_grads_via(model, rows, packed, grad, Head::Logits)
}

fn losses_and_grads_via(
    model: &DecoderModel,
    rows: &[Vec<&Example>],
    packed: bool,
    grad: Grad,
    head: Head,
) -> LossesAndGrads {
    let p = batch(rows, packed, 0, &Device::Cpu).unwrap();
    let tokens = match head {
        Head::Logits => {
            let logits = target_logits(model, &p, true, grad).unwrap();
            masked_nll_tokens(&logits, &p.targets).unwrap()
        }
        Head::Fused => target_nll(model, &p, true, grad).unwrap(),
    };
    let sums = example_nll_sums(&tokens, &p.targets).unwrap();
    let means = rows
        .iter()
        .flatten()
        .zip(sums)
        .map(|(e, s)| s / e.target_count() as f64)
        .collect();
    let grads = (grad == Grad::Tracked).then(|| {
        let g = tokens.sum_all().unwrap().backward().unwrap();
        model
            .lora_vars()
            .iter()
            .map(|(_, v)| g.get(v.as_tensor()).unwrap().clone())
            .collect()
    });
    (means, grads)
}

/// Two ways of computing the same examples agree: per-example losses within 1e-5, and each LoRA
/// gradient (when tracked) within 1e-4 of its size, none of them vanishing.
fn assert_same((want, want_g): &LossesAndGrads, (got, got_g): &LossesAndGrads, grad: Grad) {
    assert_eq!(want.len(), got.len());
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        assert!((w - g).abs() < 1e-5, "{grad:?} example {i}: {w} vs {g}");
    }
    assert_eq!(want_g.is_some(), got_g.is_some());
    let max_abs = |t: &Tensor| {
        t.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    for (w, g) in want_g.iter().flatten().zip(got_g.iter().flatten()) {
        let (diff, size) = (max_abs(&(w - g).unwrap()), max_abs(w));
        assert!(size > 0.0, "the gradient must not vanish");
        assert!(diff <= 1e-4 * size.max(1.0), "gradient differs by {diff}");
    }
}

#[test]
fn packed_rows_give_the_unpacked_losses_and_gradients() {
    let model = model();
    let ex = examples();
    let refs: Vec<&Example> = ex.iter().collect();
    let rows = pack_rows(&refs, 10);
    assert!(
        rows.iter().any(|r| r.len() > 1),
        "the test must pack something"
    );
    assert!(rows.len() < refs.len());
    // The packed order, one example per row: the reference.
    let single: Vec<Vec<&Example>> = rows.iter().flatten().map(|&e| vec![e]).collect();
    for grad in [Grad::Off, Grad::Tracked] {
        let want = losses_and_grads(&model, &single, false, grad);
        let got = losses_and_grads(&model, &rows, true, grad);
        assert_same(&want, &got, grad);
    }
    // Without the block-diagonal mask the later examples of a row would see the earlier ones.
    let (unpacked, _) = losses_and_grads(&model, &single, false, Grad::Off);
    let flat: Vec<Vec<&Example>> = rows.iter().filter(|r| r.len() > 1).cloned().collect();
    let (leaky, _) = losses_and_grads(&model, &flat, false, Grad::Off);
    let first_packed = rows.iter().take_while(|r| r.len() == 1).count();
    assert!(
        (leaky[1] - unpacked[first_packed + 1]).abs() > 1e-4,
        "joined without the mask, the second example's loss must change"
    );
}

/// The fused LM-head path the SFT step trains with gives the per-example losses and LoRA
/// gradients of the whole-logits path, on plain (left-padded, prompt positions in the tail) and
/// packed rows.
#[test]
fn fused_head_nll_equals_the_logits_path() {
    let model = model();
    let ex = examples();
    let refs: Vec<&Example> = ex.iter().collect();
    let single: Vec<Vec<&Example>> = refs.iter().map(|&e| vec![e]).collect();
    let packed = pack_rows(&refs, 10);
    for (rows, is_packed) in [(&single, false), (&packed, true)] {
        for grad in [Grad::Off, Grad::Tracked] {
            let want = losses_and_grads_via(&model, rows, is_packed, grad, Head::Logits);
            let got = losses_and_grads_via(&model, rows, is_packed, grad, Head::Fused);
            assert_same(&want, &got, grad);
        }
    }
}
