//! Property tests for every parser of outside model files: GGUF header and metadata,
//! safetensors header and `config.json`. Whatever the bytes, the parser returns a value or an
//! error: no panic, and no allocation beyond a few GiB (the process's address space is capped, so
//! a crafted tensor count or shape that tried to allocate terabytes would abort the test). Each
//! parser runs 10,000 cases in memory; 500 more go through `load_model` from a file, which also
//! builds the model from whatever the header declares.

mod common;

use std::path::Path;

use augur_model::{load_model, BuildOptions};
use common::fixture_dir;
use proptest::prelude::*;

const CASES: u32 = 10_000;
const FILE_CASES: u32 = 500;

/// Caps this test process's address space at 16 GiB (its threads share the cap).
fn cap_memory() {
    let limit = libc::rlimit {
        rlim_cur: 16 << 30,
        rlim_max: 16 << 30,
    };
    // SAFETY: plain syscall with a valid pointer.
    unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
}

/// `cases` cases (or `PROPTEST_CASES` when set).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases),
        failure_persistence: None,
        // A fixed seed: every run (CI's too) checks the same cases, so a failure is
        // reproducible rather than a draw of luck. Change the seed to explore new cases.
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_0fa0),
        ..ProptestConfig::default()
    }
}

fn load(path: &Path) {
    let opts = BuildOptions::default();
    let _ = load_model(path, Some(&fixture_dir("llama")), &opts);
}

// ---------------------------------------------------------------- GGUF

/// A metadata value: GGUF type code and its encoding.
fn gguf_value() -> impl Strategy<Value = (u32, Vec<u8>)> {
    let small = prop_oneof![
        0u64..8,
        Just(0),
        Just(u32::MAX as u64),
        Just(u64::MAX),
        any::<u64>()
    ];
    prop_oneof![
        small
            .clone()
            .prop_map(|v| (4, (v as u32).to_le_bytes().to_vec())),
        small.clone().prop_map(|v| (10, v.to_le_bytes().to_vec())),
        any::<f32>().prop_map(|v| (6, v.to_le_bytes().to_vec())),
        any::<u8>().prop_map(|v| (7, vec![v])),
        ".{0,12}".prop_map(|s| {
            let mut b = (s.len() as u64).to_le_bytes().to_vec();
            b.extend(s.as_bytes());
            (8, b)
        }),
        // Arrays: declared length possibly far beyond the bytes that follow.
        (
            prop_oneof![0u64..4, Just(u64::MAX), Just(1 << 40)],
            0u32..14,
            proptest::collection::vec(any::<u8>(), 0..24)
        )
            .prop_map(|(len, ty, tail)| {
                let mut b = ty.to_le_bytes().to_vec();
                b.extend(len.to_le_bytes());
                b.extend(tail);
                (9, b)
            }),
        (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..8)).prop_map(|(t, b)| (t, b)),
    ]
}

const KEYS: &[&str] = &[
    "general.architecture",
    "general.alignment",
    "llama.embedding_length",
    "llama.attention.head_count",
    "llama.attention.head_count_kv",
    "llama.attention.key_length",
    "llama.feed_forward_length",
    "llama.block_count",
    "llama.context_length",
    "tokenizer.ggml.model",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.eos_token_id",
];

const TENSORS: &[&str] = &[
    "token_embd.weight",
    "output_norm.weight",
    "blk.0.attn_q.weight",
    "blk.0.attn_norm.weight",
    "output.weight",
];

fn gguf_string(s: &str) -> Vec<u8> {
    let mut b = (s.len() as u64).to_le_bytes().to_vec();
    b.extend(s.as_bytes());
    b
}

prop_compose! {
    fn gguf_file()(
        declared_tensors in prop_oneof![0u64..6, Just(u64::MAX), Just(1 << 40)],
        declared_kv in prop_oneof![0u64..14, Just(u64::MAX), Just(1 << 40)],
        kvs in proptest::collection::vec((0..KEYS.len(), gguf_value()), 0..14),
        llama in any::<bool>(),
        sizes in proptest::collection::vec(prop_oneof![0u32..3, Just(64)], 4),
        tensors in proptest::collection::vec(
            (
                0..TENSORS.len(),
                prop_oneof![0u32..5, Just(u32::MAX)],
                proptest::collection::vec(prop_oneof![1u64..300, Just(0), Just(u64::MAX), Just(1 << 33)], 0..5),
                prop_oneof![0u32..16, any::<u32>()],
                prop_oneof![0u64..4096, any::<u64>()],
            ),
            0..6,
        ),
        tail in proptest::collection::vec(any::<u8>(), 0..2048),
        exact_counts in prop::bool::weighted(0.8),
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    ) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        // Mostly the true counts (so parsing gets past the header), sometimes anything.
        let (declared_tensors, declared_kv) = match exact_counts {
            true => (tensors.len() as u64, (kvs.len() + llama as usize) as u64),
            false => (declared_tensors, declared_kv),
        };
        b.extend(declared_tensors.to_le_bytes());
        b.extend(declared_kv.to_le_bytes());
        if llama {
            b.extend(gguf_string("general.architecture"));
            b.extend(8u32.to_le_bytes());
            b.extend(gguf_string("llama"));
            // The sizes a config needs, well typed but possibly 0.
            let keys = ["embedding_length", "attention.head_count", "feed_forward_length", "block_count"];
            for (key, size) in keys.iter().zip(&sizes) {
                b.extend(gguf_string(&format!("llama.{key}")));
                b.extend(4u32.to_le_bytes());
                b.extend(size.to_le_bytes());
            }
        }
        for (k, (ty, v)) in kvs {
            b.extend(gguf_string(KEYS[k]));
            b.extend(ty.to_le_bytes());
            b.extend(v);
        }
        for (name, n_dims, dims, dtype, offset) in tensors {
            b.extend(gguf_string(TENSORS[name]));
            b.extend(n_dims.to_le_bytes());
            for d in dims.iter().take(n_dims.min(8) as usize) {
                b.extend(d.to_le_bytes());
            }
            b.extend(dtype.to_le_bytes());
            b.extend(offset.to_le_bytes());
        }
        b.extend(tail);
        for (at, byte) in flips {
            let i = at.index(b.len());
            b[i] = byte;
        }
        // Usually whole, sometimes truncated anywhere.
        if cut.index(4) == 0 {
            b.truncate(cut.index(b.len() + 1));
        }
        b
    }
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn gguf_header_and_metadata_never_panic(bytes in gguf_file()) {
        cap_memory();
        let path = Path::new("m.gguf");
        let mut cursor = std::io::Cursor::new(&bytes);
        if let Ok(content) = augur_model::gguf_header::read_content(&mut cursor, path) {
            let _ = augur_model::loader::config_from_gguf(&content, path);
            let _ = augur_model::TokenizerBundle::from_gguf(&content, path);
        }
    }
}

proptest! {
    #![proptest_config(config(FILE_CASES))]

    #[test]
    fn gguf_files_never_panic_or_allocate_unboundedly(bytes in gguf_file()) {
        cap_memory();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, &bytes).unwrap();
        load(&path);
    }
}

// ---------------------------------------------------------- safetensors

prop_compose! {
    fn safetensors_file()(
        declared_len in prop_oneof![Just(None), Just(Some(u64::MAX)), Just(Some(1u64 << 40)), (0u64..512).prop_map(Some)],
        entries in proptest::collection::vec(
            (
                prop_oneof![Just("model.embed_tokens.weight".to_string()), Just("model.norm.weight".to_string()), "[a-z.]{1,12}"],
                prop_oneof![Just("F32"), Just("BF16"), Just("F16"), Just("I64"), Just("U8"), Just("XX")],
                proptest::collection::vec(prop_oneof![0u64..300, Just(u64::MAX), Just(1 << 33)], 0..4),
                (prop_oneof![0u64..4096, Just(u64::MAX)], prop_oneof![0u64..4096, Just(u64::MAX)]),
            ),
            0..5,
        ),
        garbage_header in any::<bool>(),
        data in proptest::collection::vec(any::<u8>(), 0..1024),
    ) -> Vec<u8> {
        let header = if garbage_header {
            "{\"a\": [".to_string()
        } else {
            let fields: Vec<String> = entries
                .iter()
                .map(|(name, dtype, shape, (start, end))| {
                    format!("\"{name}\": {{\"dtype\": \"{dtype}\", \"shape\": {shape:?}, \"data_offsets\": [{start}, {end}]}}")
                })
                .collect();
            format!("{{{}}}", fields.join(", "))
        };
        let mut b = declared_len.unwrap_or(header.len() as u64).to_le_bytes().to_vec();
        b.extend(header.as_bytes());
        b.extend(data);
        b
    }
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn safetensors_header_never_panics(bytes in safetensors_file()) {
        cap_memory();
        let _ = candle_core::safetensors::load_buffer(&bytes, &candle_core::Device::Cpu);
    }
}

proptest! {
    #![proptest_config(config(FILE_CASES))]

    #[test]
    fn safetensors_files_never_panic_or_allocate_unboundedly(bytes in safetensors_file()) {
        cap_memory();
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(fixture_dir("llama").join("config.json"), dir.path().join("config.json")).unwrap();
        std::fs::write(dir.path().join("model.safetensors"), &bytes).unwrap();
        load(dir.path());
    }
}

// ---------------------------------------------------------- config.json

/// A JSON value that may be of the wrong type, zero, negative or huge.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    prop_oneof![
        (0u64..5).prop_map(|v| json!(v)),
        Just(json!(u64::MAX)),
        Just(json!(1u64 << 40)),
        any::<i64>().prop_map(|v| json!(v)),
        any::<f64>().prop_map(|v| json!(v)),
        Just(json!(null)),
        Just(json!("llama")),
        Just(json!({"rope_type": "yarn"})),
        Just(json!([1, 2])),
        Just(json!(true)),
    ]
}

const CONFIG_KEYS: &[&str] = &[
    "model_type",
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "num_hidden_layers",
    "vocab_size",
    "max_position_embeddings",
    "rope_theta",
    "rms_norm_eps",
    "rope_scaling",
    "rope_parameters",
    "eos_token_id",
    "tie_word_embeddings",
];

/// The fixture's config with `edits` (set or remove keys), as text (`not_json`: cut short).
fn edited_config(edits: Vec<(usize, Option<serde_json::Value>)>, not_json: bool) -> String {
    let fixture = fixture_dir("llama");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("config.json")).unwrap())
            .unwrap();
    for (k, v) in edits {
        match v {
            Some(v) => cfg[CONFIG_KEYS[k]] = v,
            None => {
                cfg.as_object_mut().unwrap().remove(CONFIG_KEYS[k]);
            }
        }
    }
    match not_json {
        true => cfg.to_string()[1..].to_string(),
        false => cfg.to_string(),
    }
}

fn config_edits() -> impl Strategy<Value = Vec<(usize, Option<serde_json::Value>)>> {
    proptest::collection::vec(
        (0..CONFIG_KEYS.len(), proptest::option::of(json_value())),
        0..6,
    )
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn config_json_never_panics(edits in config_edits(), not_json in any::<bool>()) {
        let text = edited_config(edits, not_json);
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
            let _ = augur_model::ModelConfig::from_hf_json(&json, Path::new("config.json"));
        }
    }
}

proptest! {
    #![proptest_config(config(FILE_CASES))]

    #[test]
    fn config_json_files_never_panic_or_allocate_unboundedly(
        edits in config_edits(),
        not_json in any::<bool>(),
    ) {
        cap_memory();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), edited_config(edits, not_json)).unwrap();
        // The weights are the fixture's: most edited configs no longer fit them.
        let fixture = fixture_dir("llama");
        std::os::unix::fs::symlink(
            fixture.join("model.safetensors"),
            dir.path().join("model.safetensors"),
        )
        .unwrap();
        load(dir.path());
    }
}
