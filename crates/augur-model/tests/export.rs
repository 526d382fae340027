//! Exporting with merged adapters gives an HF folder that reloads to the same logits.

mod common;

use augur_model::{load_model, BuildOptions, ForwardOpts, Grad, LogitsAt, StepInput};
use candle_core::{Device, Tensor};
use common::*;

#[test]
fn merged_export_reloads_to_adapted_logits() {
    let mut model = fixture_model("qwen2", candle_core::DType::F32);
    attach_lora_everywhere(&mut model, 4, 5);
    for (name, var) in model.lora_vars() {
        if name.ends_with("lora_B.weight") {
            var.set(&Tensor::randn(0f32, 0.1, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
    let input =
        StepInput::left_padded(&[vec![5, 9, 200, 17], vec![44, 12]], 0, &Device::Cpu).unwrap();
    let opts = ForwardOpts {
        adapters: true,
        grad: Grad::Off,
        logits: LogitsAt::All,
    };
    let adapted = model.forward(&input, None, opts).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tok = tiny_tokenizer();
    model.export_hf(&tok, dir.path()).unwrap();
    let reloaded = load_model(
        dir.path(),
        None,
        &BuildOptions {
            max_positions: Some(64),
            ..Default::default()
        },
    )
    .unwrap();
    let merged = reloaded.model.forward(&input, None, opts).unwrap();
    let real = Tensor::new(&[[1f32, 1., 1., 1.], [0., 0., 1., 1.]], &Device::Cpu)
        .unwrap()
        .unsqueeze(2)
        .unwrap();
    let d = max_abs_diff(
        &adapted.broadcast_mul(&real).unwrap(),
        &merged.broadcast_mul(&real).unwrap(),
    );
    assert!(d < 1e-4, "merged export differs by {d}");
    assert_eq!(reloaded.model.lora_param_count(), 0);
    assert!(dir.path().join("tokenizer_config.json").exists());
}

/// A 256-token word-level tokenizer, enough for the fixture vocabulary.
fn tiny_tokenizer() -> augur_model::TokenizerBundle {
    use tokenizers::models::wordlevel::WordLevel;
    let vocab = (0..256u32).map(|i| (format!("t{i}"), i)).collect();
    let wl = WordLevel::builder()
        .vocab(vocab)
        .unk_token("t0".into())
        .build()
        .unwrap();
    augur_model::TokenizerBundle {
        tokenizer: tokenizers::Tokenizer::new(wl),
        chat_template: None,
        bos_token: None,
        eos_token: Some("t2".into()),
        eos_ids: vec![2],
        pad_id: 0,
    }
}
