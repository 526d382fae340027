//! The policy update with shared prompt prefixes equals the update that runs every row in
//! full: same loss, same gradient norm, same adapter weights after the optimizer step.

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

fn update(shared_prefix: bool) -> (UpdateReport, Vec<Vec<f32>>) {
    let model = model();
    let mut opt = FusedAdamW::new(model.lora_vars(), AdamWConfig::default()).unwrap();
    let schedule = LrSchedule::new(ScheduleConfig {
        lr: 1e-3,
        kind: ScheduleKind::Constant,
        ..Default::default()
    })
    .unwrap();
    let cfg = AlgorithmSection {
        micro_batch_size: 4,
        shared_prefix,
        ..Default::default()
    };
    let report = policy_update(&model, &mut opt, &schedule, &rollouts(), &cfg, 0).unwrap();
    let weights = model
        .lora_vars()
        .iter()
        .map(|(_, v)| v.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect();
    (report, weights)
}

#[test]
fn shared_prefix_update_equals_full_rows() {
    let (full, w_full) = update(false);
    let (shared, w_shared) = update(true);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * (1.0 + a.abs());
    assert!(
        close(full.loss, shared.loss),
        "loss {} vs {}",
        full.loss,
        shared.loss
    );
    assert!(full.loss.abs() > 1e-6, "the test batch must produce a loss");
    let (g_full, g_shared) = (full.steps[0].grad_norm, shared.steps[0].grad_norm);
    assert!(
        g_full > 0.0 && close(g_full, g_shared),
        "grad norm {g_full} vs {g_shared}"
    );
    assert_eq!(full.train_tokens, shared.train_tokens);
    // Adam's first step moves each weight by about lr; allow 1% of that.
    for (a, b) in w_full.iter().zip(&w_shared) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "adapter weight {x} vs {y}");
        }
    }
}
