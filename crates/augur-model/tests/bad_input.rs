//! Broken checkpoints give errors that name the file and the field or tensor.

mod common;

use std::fs;

use augur_model::{load_model, BuildOptions};
use common::fixture_dir;

fn copy_fixture(arch: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors", "generation_config.json"] {
        fs::copy(fixture_dir(arch).join(f), dir.path().join(f)).unwrap();
    }
    dir
}

fn load_err(dir: &std::path::Path) -> String {
    match load_model(dir, Some(&fixture_dir("llama")), &BuildOptions::default()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn truncated_safetensors_is_reported() {
    let dir = copy_fixture("qwen2");
    let p = dir.path().join("model.safetensors");
    let bytes = fs::read(&p).unwrap();
    fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_err(dir.path());
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn missing_config_field_and_unknown_arch_are_reported() {
    let dir = copy_fixture("qwen2");
    let p = dir.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
    cfg.as_object_mut().unwrap().remove("num_hidden_layers");
    fs::write(&p, cfg.to_string()).unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("config.json: field `num_hidden_layers`: missing"),
        "{err}"
    );
    cfg["num_hidden_layers"] = 2.into();
    cfg["model_type"] = "falcon".into();
    fs::write(&p, cfg.to_string()).unwrap();
    assert!(load_err(dir.path()).contains("unsupported architecture `falcon`"));
}

#[test]
fn shape_mismatch_names_the_tensor() {
    let dir = copy_fixture("qwen2");
    let p = dir.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
    cfg["intermediate_size"] = 96.into();
    fs::write(&p, cfg.to_string()).unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("model.layers.0.mlp.gate_proj.weight") && err.contains("expected [96, 64]"),
        "{err}"
    );
}

#[test]
fn tokenizer_larger_than_embedding_is_rejected() {
    // The fixtures have a 256-row embedding; SmolLM2's GGUF tokenizer has 49152 tokens.
    let Some(gguf) = common::smollm2_gguf() else {
        return;
    };
    let tok_dir = tempfile::tempdir().unwrap();
    let bundle = augur_model::loader::load_model(&gguf, None, &BuildOptions::default())
        .unwrap()
        .tokenizer;
    bundle
        .tokenizer
        .save(tok_dir.path().join("tokenizer.json"), false)
        .unwrap();
    let err = match load_model(
        &fixture_dir("llama"),
        Some(tok_dir.path()),
        &BuildOptions::default(),
    ) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("tokenizer has 49152 tokens") && err.contains("256 rows"),
        "{err}"
    );
}

#[test]
fn garbage_gguf_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("model.gguf");
    fs::write(&p, b"GGUF this is not really a gguf file").unwrap();
    let err = match load_model(&p, None, &BuildOptions::default()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("model.gguf") && err.contains("GGUF"), "{err}");
}
