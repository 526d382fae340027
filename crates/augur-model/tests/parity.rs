//! Logit parity with HF transformers on tiny random Llama, Qwen2 and Qwen3 models,
//! for a left-padded full forward and for prefill + cached decode.

mod common;

use augur_model::{ForwardOpts, Grad, LogitsAt, StepInput, WeightDtype};
use candle_core::{DType, Device, Tensor};
use common::*;

const TOL: f32 = 1e-4;
/// With `[model] dtype = "bf16"` the frozen weights and their inputs are rounded to bf16 (8
/// significant bits, relative error up to 2^-9 each), so logits move by about 2^-8 of their
/// terms' magnitude per layer. On these random fixtures (logits O(1)) the measured worst case
/// is 0.043 (qwen3, a decode step; 0.02-0.03 elsewhere), so the bound is 8e-2.
const TOL_BF16: f32 = 8e-2;

fn tol(weights: WeightDtype) -> f32 {
    match weights {
        WeightDtype::F32 => TOL,
        WeightDtype::Bf16 => TOL_BF16,
    }
}

fn full_forward_matches(arch: &str, grad: Grad) {
    full_forward_matches_with(arch, grad, WeightDtype::F32)
}

fn full_forward_matches_with(arch: &str, grad: Grad, weights: WeightDtype) {
    let model = fixture_model_with(arch, DType::F32, weights);
    assert_eq!(model.weight_dtype(), weights);
    let exp = expected(arch);
    let rows = unpadded_rows(&exp["input_ids"], &exp["attention_mask"]);
    let input = StepInput::left_padded(&rows, 0, &Device::Cpu).unwrap();
    let want_pos = exp["position_ids"].to_dtype(DType::U32).unwrap();
    assert_eq!(
        input.positions.to_vec2::<u32>().unwrap(),
        want_pos.to_vec2::<u32>().unwrap()
    );
    let opts = ForwardOpts {
        adapters: true,
        grad,
        logits: LogitsAt::All,
    };
    let logits = model.forward(&input, None, opts).unwrap();
    let want = &exp["logits"];
    let mask = exp["attention_mask"].to_vec2::<i64>().unwrap();
    let mut worst = 0f32;
    for (b, row) in mask.iter().enumerate() {
        for (t, &m) in row.iter().enumerate() {
            if m == 1 {
                let got = logits.get(b).unwrap().get(t).unwrap();
                let exp_row = want.get(b).unwrap().get(t).unwrap();
                worst = worst.max(max_abs_diff(&got, &exp_row));
            }
        }
    }
    eprintln!("{arch} {weights:?} ({grad:?}): max |dlogit| vs HF f32 {worst}");
    assert!(
        worst < tol(weights),
        "{arch} {weights:?} ({grad:?}): max |dlogit| {worst}"
    );
}

fn cached_decode_matches(arch: &str) {
    cached_decode_matches_with(arch, WeightDtype::F32)
}

fn cached_decode_matches_with(arch: &str, weights: WeightDtype) {
    let model = fixture_model_with(arch, DType::F32, weights);
    assert_eq!(model.weight_dtype(), weights);
    let exp = expected(arch);
    let rows = unpadded_rows(&exp["input_ids"], &exp["attention_mask"]);
    let input = StepInput::left_padded(&rows, 0, &Device::Cpu).unwrap();
    let mut cache = model.new_cache(rows.len(), 16).unwrap();
    let last = model
        .forward(&input, Some(&mut cache), ForwardOpts::generate())
        .unwrap();
    let want_last = exp["logits"].narrow(1, 6, 1).unwrap().squeeze(1).unwrap();
    let d = max_abs_diff(&last, &want_last);
    assert!(
        d < tol(weights),
        "{arch} {weights:?}: prefill last logits {d}"
    );
    let tokens = exp["decode_tokens"].to_vec2::<i64>().unwrap();
    let want = &exp["decode_logits"];
    for s in 0..tokens[0].len() {
        let step_tokens: Vec<u32> = tokens.iter().map(|r| r[s] as u32).collect();
        let positions: Vec<u32> = rows.iter().map(|r| (r.len() + s) as u32).collect();
        let step = StepInput::decode(&step_tokens, &positions, &Device::Cpu).unwrap();
        let logits = model
            .forward(&step, Some(&mut cache), ForwardOpts::generate())
            .unwrap();
        let want_s = want.narrow(1, s, 1).unwrap().squeeze(1).unwrap();
        let d = max_abs_diff(&logits, &want_s);
        eprintln!("{arch} {weights:?}: decode step {s}: max |dlogit| vs HF f32 {d}");
        assert!(
            d < tol(weights),
            "{arch} {weights:?}: decode step {s}: max |dlogit| {d}"
        );
    }
}

#[test]
fn llama_full_forward() {
    full_forward_matches("llama", Grad::Off);
    full_forward_matches("llama", Grad::Tracked);
}

#[test]
fn qwen2_full_forward() {
    full_forward_matches("qwen2", Grad::Off);
    full_forward_matches("qwen2", Grad::Tracked);
}

#[test]
fn qwen3_full_forward() {
    full_forward_matches("qwen3", Grad::Off);
    full_forward_matches("qwen3", Grad::Tracked);
}

#[test]
fn llama_cached_decode() {
    cached_decode_matches("llama");
}

#[test]
fn qwen2_cached_decode() {
    cached_decode_matches("qwen2");
}

#[test]
fn qwen3_cached_decode() {
    cached_decode_matches("qwen3");
}

/// `[model] dtype = "bf16"` against the same HF f32 references, within [`TOL_BF16`].
#[test]
fn bf16_weights_match_transformers_f32_within_bf16_tolerance() {
    if !bf16_available() {
        return;
    }
    for arch in ["llama", "qwen2", "qwen3"] {
        full_forward_matches_with(arch, Grad::Off, WeightDtype::Bf16);
        full_forward_matches_with(arch, Grad::Tracked, WeightDtype::Bf16);
        cached_decode_matches_with(arch, WeightDtype::Bf16);
    }
}

/// Duplicating prefilled rows and dropping rows leaves each row's logits unchanged.
#[test]
fn cache_row_select_keeps_rows_intact() {
    // Keep row 2 twice and row 0 once; drop row 1 (a copy into a new cache).
    cache_row_select_matches(&[2, 0, 2]);
    // Move row 2 into row 0's slot and keep row 1 (compaction in place).
    cache_row_select_matches(&[2, 1]);
    // Copy rows to several samples each (expansion in place, into reserved rows).
    cache_row_select_matches(&[0, 0, 1, 2, 2]);
}

fn cache_row_select_matches(keep: &[usize]) {
    let model = fixture_model("qwen2", DType::F32);
    let exp = expected("qwen2");
    let rows = unpadded_rows(&exp["input_ids"], &exp["attention_mask"]);
    let input = StepInput::left_padded(&rows, 0, &Device::Cpu).unwrap();
    let mut cache = model.new_cache(3, 16).unwrap();
    cache.reserve_rows(keep.len()).unwrap();
    model
        .forward(&input, Some(&mut cache), ForwardOpts::generate())
        .unwrap();
    cache.select_rows(keep).unwrap();
    let tokens = exp["decode_tokens"].to_vec2::<i64>().unwrap();
    let next: Vec<u32> = keep.iter().map(|&r| tokens[r][0] as u32).collect();
    let positions: Vec<u32> = keep.iter().map(|&r| rows[r].len() as u32).collect();
    let step = StepInput::decode(&next, &positions, &Device::Cpu).unwrap();
    let logits = model
        .forward(&step, Some(&mut cache), ForwardOpts::generate())
        .unwrap();
    let want = exp["decode_logits"]
        .narrow(1, 0, 1)
        .unwrap()
        .squeeze(1)
        .unwrap()
        .contiguous()
        .unwrap();
    let pick: Vec<u32> = keep.iter().map(|&r| r as u32).collect();
    let pick = Tensor::new(pick.as_slice(), &Device::Cpu).unwrap();
    let want = want.index_select(&pick, 0).unwrap();
    assert!(max_abs_diff(&logits, &want) < TOL, "keep {keep:?}");
}

/// `LogitsAt::Tail(n)` equals the last `n` positions of the full logits.
#[test]
fn tail_logits_equal_the_end_of_full_logits() {
    let model = fixture_model("qwen3", DType::F32);
    let exp = expected("qwen3");
    let rows = unpadded_rows(&exp["input_ids"], &exp["attention_mask"]);
    let input = StepInput::left_padded(&rows, 0, &Device::Cpu).unwrap();
    let at = |logits| ForwardOpts {
        adapters: true,
        grad: Grad::Tracked,
        logits,
    };
    let full = model.forward(&input, None, at(LogitsAt::All)).unwrap();
    let tail = model.forward(&input, None, at(LogitsAt::Tail(3))).unwrap();
    assert_eq!(tail.dims(), &[3, 3, 256]);
    assert_eq!(max_abs_diff(&tail, &full.narrow(1, 4, 3).unwrap()), 0.0);
    assert!(model.forward(&input, None, at(LogitsAt::Tail(8))).is_err());
}
