//! Proof that the GRPO loop learns: a tiny randomly initialised Llama must learn, from reward
//! alone, to answer each prompt `d` (a digit) with the digit `(3d + 1) mod 10`.
//!
//! The model's vocabulary is 16 tokens, so the random policy starts near 1/16 reward. Only the LoRA adapters train; every stage of the real loop runs: batched
//! rollouts with per-token logprobs, the math verifier, group advantages, the clipped policy
//! loss, backprop through the adapters and the fused AdamW step. Seeded, so it is reproducible.

use std::collections::HashMap;
use std::path::Path;

use augur_train::grpo::{run, GrpoConfig, Launch};
use candle_core::{Device, Tensor};
use tokenizers::decoders::fuse::Fuse;
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::Tokenizer;

const VOCAB: [&str; 16] = [
    "<pad>", "<eos>", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "=", "+", "a", "b",
];
const HIDDEN: usize = 32;
const INTERMEDIATE: usize = 64;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 8;

fn write_tokenizer(dir: &Path) {
    let vocab = VOCAB
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect();
    let wl = WordLevel::builder()
        .vocab(vocab)
        .unk_token("<pad>".into())
        .build()
        .unwrap();
    let mut tok = Tokenizer::new(wl);
    tok.with_pre_tokenizer(Some(Whitespace {}));
    tok.with_decoder(Some(Fuse::new()));
    tok.save(dir.join("tokenizer.json"), false).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"eos_token": "<eos>", "pad_token": "<pad>"}"#,
    )
    .unwrap();
}

/// Normal(0, std) weights from a fixed splitmix64 stream (Box–Muller), so the model is the same
/// on every machine.
struct Init(u64);

impl Init {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self, shape: (usize, usize), std: f64) -> Tensor {
        let data: Vec<f32> = (0..shape.0 * shape.1)
            .map(|_| {
                let (u1, u2) = (self.uniform().max(1e-12), self.uniform());
                (std * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
            })
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }
}

fn write_model(dir: &Path) {
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "max_position_embeddings": 64,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": false,
        "vocab_size": VOCAB.len(),
        "bos_token_id": 1,
        "eos_token_id": 1,
        "pad_token_id": 0,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut init = Init(7);
    let mut w = HashMap::new();
    let ones = |n: usize| Tensor::ones(n, candle_core::DType::F32, &Device::Cpu).unwrap();
    w.insert(
        "model.embed_tokens.weight".to_string(),
        init.normal((VOCAB.len(), HIDDEN), 0.1),
    );
    w.insert(
        "lm_head.weight".to_string(),
        init.normal((VOCAB.len(), HIDDEN), 0.15),
    );
    w.insert("model.norm.weight".to_string(), ones(HIDDEN));
    for l in 0..LAYERS {
        let p = format!("model.layers.{l}");
        let shapes = [
            ("self_attn.q_proj", (HEADS * HEAD_DIM, HIDDEN)),
            ("self_attn.k_proj", (KV_HEADS * HEAD_DIM, HIDDEN)),
            ("self_attn.v_proj", (KV_HEADS * HEAD_DIM, HIDDEN)),
            ("self_attn.o_proj", (HIDDEN, HEADS * HEAD_DIM)),
            ("mlp.gate_proj", (INTERMEDIATE, HIDDEN)),
            ("mlp.up_proj", (INTERMEDIATE, HIDDEN)),
            ("mlp.down_proj", (HIDDEN, INTERMEDIATE)),
        ];
        for (name, shape) in shapes {
            w.insert(format!("{p}.{name}.weight"), init.normal(shape, 0.02));
        }
        w.insert(format!("{p}.input_layernorm.weight"), ones(HIDDEN));
        w.insert(format!("{p}.post_attention_layernorm.weight"), ones(HIDDEN));
    }
    candle_core::safetensors::save(&w, dir.join("model.safetensors")).unwrap();
}

fn write_data(path: &Path) {
    let data: String = (0..10)
        .map(|d| {
            format!(
                "{{\"question\": \"{d}\", \"answer\": \"{}\"}}\n",
                (3 * d + 1) % 10
            )
        })
        .collect();
    std::fs::write(path, data).unwrap();
}

#[test]
fn tiny_model_learns_a_digit_map_from_reward_alone() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    write_tokenizer(dir);
    write_model(dir);
    write_data(&dir.join("train.jsonl"));
    let toml = format!(
        "[model]\npath = {dir:?}\n\
         [lora]\nrank = 4\nalpha = 8.0\ntargets = [\"q\", \"k\", \"v\", \"o\", \"gate\", \"up\", \"down\"]\n\
         [data]\ntrain = {train:?}\nraw = true\n\
         [rollout]\nprompts_per_step = 10\ngroup_size = 16\nmax_new_tokens = 1\n\
         [algorithm]\nsteps = 80\nmicro_batch_size = 160\n\
         [algorithm.loss]\nbeta = 0.0\n\
         [optimizer.schedule]\nlr = 2e-2\nkind = \"constant\"\n\
         [eval]\nfile = {train:?}\nevery = 40\n\
         [checkpoint]\ndir = {run:?}\n[logging]\nprint = false\n",
        train = dir.join("train.jsonl"),
        run = dir.join("run"),
    );
    let cfg = GrpoConfig::from_toml_str(&toml, &[]).unwrap();
    let rewards = run(&cfg, &Launch::fresh()).unwrap().rewards;
    let mean = |r: &[f64]| r.iter().sum::<f64>() / r.len() as f64;
    let (first, last) = (rewards[0], mean(&rewards[rewards.len() - 10..]));
    eprintln!("rewards: {rewards:.2?}");
    assert!(
        first < 0.2,
        "the random policy should start near 1/16: {first:.3}"
    );
    assert!(
        last > 0.6,
        "reward should rise above 0.6, got {first:.3} → {last:.3}"
    );

    // Greedy evaluation (logged at steps 0, 40 and 80): the argmax answer becomes right.
    let evals: Vec<(u64, f64)> = std::fs::read_to_string(cfg.metrics_path())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|m| Some((m["step"].as_u64()?, m["eval_accuracy"].as_f64()?)))
        .collect();
    eprintln!("greedy eval: {evals:?}");
    assert_eq!(evals.iter().map(|e| e.0).collect::<Vec<_>>(), [0, 40, 80]);
    assert!(evals[0].1 <= 0.3, "{evals:?}");
    assert!(evals[2].1 >= 0.9, "{evals:?}");
}
