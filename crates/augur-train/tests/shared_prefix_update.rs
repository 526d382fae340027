//! The policy update with shared prompt prefixes, the one whose LM head runs one row at a time
//! (`logits_memory_mb = 0`) instead of all rows at once, and the one with activation checkpointing
//! (`activation_checkpointing`) equal the plain update that runs every row in full with whole
//! logits: same loss, same gradient norm, same adapter weights after the optimizer step.

use std::path::PathBuf;

use augur_model::{load_model, BuildOptions, DecoderModel, LoraConfig, Target};
use augur_train::grpo::config::AlgorithmSection;
use augur_train::grpo::update::{policy_update, Rollout, UpdateReport};
use augur_train::optim::{AdamWConfig, FusedAdamW};
use augur_train::schedule::{LrSchedule, ScheduleConfig, ScheduleKind};
use candle_core::{Device, Tensor};

fn model() -> DecoderModel {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let mut loaded = load_model(
        &fixtures.join("parity/llama"),
        Some(&fixtures.join("char-tokenizer")),
        &BuildOptions::default(),
    )
    .unwrap();
    loaded
        .model
        .attach_lora(&LoraConfig {
            rank: 4,
            alpha: 8.0,
            targets: Target::ALL.to_vec(),
            seed: 5,
        })
        .unwrap();
    for (i, (name, var)) in loaded.model.lora_vars().into_iter().enumerate() {
        if name.ends_with("lora_B.weight") {
            // Deterministic, different per tensor, so both models start identical.
            let n = var.elem_count();
            let v: Vec<f32> = (0..n)
                .map(|j| ((i * 31 + j * 17) % 23) as f32 / 23.0 - 0.5)
                .collect();
            var.set(
                &Tensor::from_vec(v, var.shape(), &Device::Cpu)
                    .unwrap()
                    .affine(0.1, 0.0)
                    .unwrap(),
            )
            .unwrap();
        }
    }
    loaded.model
}

/// Two prompts of different lengths, 3 and 2 completions each (interleaved), with
/// completions of different lengths, one empty, mixed advantages and rollout logprobs.
fn rollouts() -> Vec<Rollout> {
    let prompts: [Vec<u32>; 2] = [vec![5, 9, 20, 17, 3], vec![44, 12, 8]];
    let completions: [(usize, &[u32]); 6] = [
        (0, &[7, 1, 2, 9]),
        (1, &[3, 3]),
        (0, &[11]),
        (1, &[6, 4, 2, 2, 8, 1]),
        (0, &[9, 9, 9]),
        (0, &[]),
    ];
    completions
        .iter()
        .enumerate()
        .map(|(i, (p, c))| Rollout {
            group: *p,
            prompt_ids: prompts[*p].clone(),
            completion: c.to_vec(),
            old_logp: c
                .iter()
                .enumerate()
                .map(|(j, _)| -2.0 - 0.1 * j as f32)
                .collect(),
            advantage: [1.0, -0.5, 0.7, -1.2, 0.3, 0.9][i],
            truncated: i == 3,
        })
        .collect()
}

fn update(cfg: AlgorithmSection) -> (UpdateReport, Vec<Vec<f32>>) {
    let model = model();
    let mut opt = FusedAdamW::new(model.lora_vars(), AdamWConfig::default()).unwrap();
    let schedule = LrSchedule::new(ScheduleConfig {
        lr: 1e-3,
        kind: ScheduleKind::Constant,
        ..Default::default()
    })
    .unwrap();
    let report = policy_update(&model, &mut opt, &schedule, &rollouts(), &cfg, 0).unwrap();
    let weights = model
        .lora_vars()
        .iter()
        .map(|(_, v)| v.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect();
    (report, weights)
}

/// Micro-batches of 4 rows, every row in full with whole logits unless `shared_prefix` or a
/// zero logits budget (the LM head then runs one row at a time), with KL and entropy terms on.
fn config(shared_prefix: bool, logits_memory_mb: usize) -> AlgorithmSection {
    let mut cfg = AlgorithmSection {
        micro_batch_size: 4,
        shared_prefix,
        logits_memory_mb,
        ..Default::default()
    };
    cfg.loss.beta = 0.05;
    cfg.loss.entropy_coef = 0.01;
    cfg
}

fn assert_same_update(a: &(UpdateReport, Vec<Vec<f32>>), b: &(UpdateReport, Vec<Vec<f32>>)) {
    let ((full, w_full), (other, w_other)) = (a, b);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * (1.0 + a.abs());
    assert!(
        close(full.loss, other.loss),
        "loss {} vs {}",
        full.loss,
        other.loss
    );
    assert!(full.loss.abs() > 1e-6, "the test batch must produce a loss");
    let (g_full, g_other) = (full.steps[0].grad_norm, other.steps[0].grad_norm);
    assert!(
        g_full > 0.0 && close(g_full, g_other),
        "grad norm {g_full} vs {g_other}"
    );
    let (e, k) = (full.stats.entropy.unwrap(), full.stats.kl.unwrap());
    assert!(close(e, other.stats.entropy.unwrap()), "entropy");
    assert!(k > 0.0 && close(k, other.stats.kl.unwrap()), "kl");
    assert_eq!(full.train_tokens, other.train_tokens);
    // Adam's first step moves each weight by about lr; allow 1% of that.
    for (a, b) in w_full.iter().zip(w_other) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "adapter weight {x} vs {y}");
        }
    }
}

#[test]
fn shared_prefix_update_equals_full_rows() {
    let full = update(config(false, 256));
    assert_same_update(&full, &update(config(true, 256)));
}

#[test]
fn chunked_lm_head_update_equals_whole_logits() {
    let full = update(config(false, 256));
    assert_same_update(&full, &update(config(false, 0)));
    assert_same_update(&full, &update(config(true, 0)));
}

#[test]
fn activation_checkpointing_update_equals_the_plain_update() {
    let full = update(config(false, 256));
    for (shared_prefix, logits_memory_mb) in [(false, 256), (true, 256), (false, 0), (true, 0)] {
        let mut cfg = config(shared_prefix, logits_memory_mb);
        cfg.activation_checkpointing = true;
        assert_same_update(&full, &update(cfg));
    }
}
