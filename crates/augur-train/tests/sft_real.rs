//! A bounded real-model check: the shipped GSM8K SFT config, shortened, lowers SmolLM2-135M's
//! held-out loss on GSM8K test solutions, with UDS selection on its real 49k vocabulary.
//! Skipped (with a note) when the model is not in the asset cache.

use std::path::PathBuf;

use augur_train::sft::{run_with, Launch, SftConfig};

fn smollm2_gguf() -> Option<PathBuf> {
    let cache = std::env::var_os("AUGUR_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/augur")))?;
    let p = cache.join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} missing; run scripts/fetch-assets.sh",
            p.display()
        );
        None
    }
}

#[test]
fn sft_lowers_held_out_loss_on_smollm2() {
    let Some(model) = smollm2_gguf() else { return };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let run = tempfile::tempdir().unwrap();
    let sets = [
        format!("model.path={:?}", model.display().to_string()),
        format!("data.train={:?}", root.join("datasets/gsm8k/train.jsonl")),
        format!("eval.file={:?}", root.join("datasets/gsm8k/test.jsonl")),
        format!("checkpoint.dir={:?}", run.path().join("run")),
        "train.steps=4".into(),
        "train.micro_batch_size=2".into(),
        "selection.method=\"uds\"".into(),
        "selection.candidates=3".into(),
        "selection.keep=2".into(),
        "data.max_seq_len=256".into(),
        "optimizer.schedule.lr=1e-3".into(),
        "optimizer.schedule.kind=\"constant\"".into(),
        "optimizer.schedule.warmup_steps=0".into(),
        "eval.every=0".into(),
        "eval.max_examples=3".into(),
        "checkpoint.every=0".into(),
        "logging.print=false".into(),
    ];
    let cfg = SftConfig::load(&root.join("configs/sft-gsm8k-smollm2.toml"), &sets).unwrap();
    let mut lines = Vec::new();
    let summary = run_with(&cfg, &Launch::fresh(), &mut |l| {
        lines.push(serde_json::to_value(l).unwrap())
    })
    .unwrap();
    let (before, after) = (summary.eval_losses[0].1, summary.eval_losses[1].1);
    eprintln!("held-out loss {before:.4} -> {after:.4}");
    assert!(after < before - 0.05, "{:?}", summary.eval_losses);
    for l in lines.iter().filter(|l| l.get("loss").is_some()) {
        assert_eq!(l["samples"], 2);
        assert!(l["uds_intra_mean"].as_f64().unwrap() > 0.0, "{l}");
    }
    assert!(summary
        .final_checkpoint
        .join("adapter_model.safetensors")
        .exists());
}
