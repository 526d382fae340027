//! End-to-end GRPO plumbing on the tiny random Llama fixture: metrics are written with a finite
//! loss, checkpoints appear, and a run resumed from a checkpoint reproduces the uninterrupted run.

use std::path::{Path, PathBuf};

use augur_train::grpo::{run, GrpoConfig, Launch};
use serde_json::Value;

fn setup(root: &Path) -> GrpoConfig {
    // Each prompt is one token (tests/fixtures/char-tokenizer has no pre-tokenizer).
    let data: String = (0..6)
        .map(|i| format!("{{\"question\": \"{}\", \"answer\": \"{}\"}}\n", i, i % 3))
        .collect();
    std::fs::write(root.join("train.jsonl"), data).unwrap();
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let (fixture, tokenizer) = (
        fixtures.join("parity/llama"),
        fixtures.join("char-tokenizer"),
    );
    let toml = format!(
        "[model]\npath = {fixture:?}\ntokenizer = {tokenizer:?}\n[lora]\nrank = 4\nalpha = 8.0\ntargets = [\"q\", \"v\", \"down\"]\n\
         [data]\ntrain = {train:?}\nraw = true\n[rollout]\nprompts_per_step = 3\ngroup_size = 8\nmax_new_tokens = 8\n\
         [algorithm]\nsteps = 3\nmicro_batch_size = 5\n[algorithm.loss]\nbeta = 0.04\n\
         [optimizer.schedule]\nlr = 1e-2\nkind = \"constant\"\n[checkpoint]\ndir = {dir:?}\nevery = 1\n[logging]\nprint = false\n",
        train = root.join("train.jsonl"),
        dir = root.join("run"),
    );
    GrpoConfig::from_toml_str(&toml, &[]).unwrap()
}

fn metrics(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Resumes `cfg`'s run from checkpoint `ck` (step 1) into `dir` and asserts that metrics `keys`
/// of steps 2.. equal those of the uninterrupted run `full`.
fn resume_and_compare(cfg: &GrpoConfig, dir: &Path, ck: &Path, full: &[Value], keys: &[&str]) {
    let mut resumed_cfg = cfg.clone();
    resumed_cfg.checkpoint.dir = dir.to_path_buf();
    resumed_cfg.logging.metrics = None;
    run(&resumed_cfg, &Launch::resume(ck)).unwrap();
    let resumed = metrics(&resumed_cfg.metrics_path());
    assert_eq!(resumed.len(), 2);
    for (a, b) in full[1..].iter().zip(&resumed) {
        assert_eq!(a["step"], b["step"]);
        for k in keys {
            assert_eq!(a[k], b[k], "{k} differs at step {}", a["step"]);
        }
    }
}

const SAME: [&str; 6] = [
    "reward_mean",
    "loss",
    "grad_norm",
    "kl",
    "response_len",
    "lr",
];

#[test]
fn tiny_run_writes_metrics_checkpoints_and_resumes_exactly() {
    let root = tempfile::tempdir().unwrap();
    let cfg = setup(root.path());
    let summary = run(&cfg, &Launch::fresh()).unwrap();
    assert_eq!(summary.steps, 3);
    let full = metrics(&cfg.metrics_path());
    assert_eq!(full.len(), 3);
    // With this seed step 2 has correct completions, so the policy-gradient path is exercised.
    assert!(
        full.iter()
            .any(|m| m["reward_mean"].as_f64().unwrap() > 0.0),
        "{full:?}"
    );
    for m in &full {
        assert!(m["loss"].as_f64().unwrap().is_finite(), "{m}");
        assert!(m["kl"].as_f64().unwrap().is_finite(), "{m}");
        assert!(m["grad_norm"].as_f64().unwrap().is_finite(), "{m}");
    }
    let ck = root.path().join("run/checkpoint-1");
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
        "config.toml",
    ] {
        assert!(ck.join(f).exists(), "{f}");
    }

    resume_and_compare(&cfg, &root.path().join("resumed"), &ck, &full, &SAME);
    // Resuming an earlier checkpoint in the original run dir would replace checkpoints 2 and 3:
    // refused unless overwriting; then the checkpoint's steps are kept and the later ones
    // replaced. A fresh run in the same dir is refused unless overwriting, then starts afresh.
    let steps = |v: Vec<Value>| {
        v.iter()
            .map(|m| m["step"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    let err = run(&cfg, &Launch::resume(&ck)).unwrap_err().to_string();
    assert!(err.contains("checkpoint-3"), "{err}");
    let overwrite = |resume: Option<&Path>| Launch {
        resume: resume.map(Path::to_path_buf),
        overwrite: true,
    };
    run(&cfg, &overwrite(Some(&ck))).unwrap();
    assert_eq!(steps(metrics(&cfg.metrics_path())), vec![1, 2, 3]);
    let err = run(&cfg, &Launch::fresh()).unwrap_err().to_string();
    assert!(err.contains("holds another run"), "{err}");
    run(&cfg, &overwrite(None)).unwrap();
    assert_eq!(steps(metrics(&cfg.metrics_path())), vec![1, 2, 3]);
}

/// Sampler metrics that must match between an uninterrupted and a resumed run (timings excluded).
const SAME_SAMPLER: [&str; 4] = [
    "sampler_effective_ratio",
    "sampler_spearman",
    "sampler_brier",
    "rollouts_used",
];

fn with_sampler(root: &Path, sampler: &str) -> GrpoConfig {
    let mut cfg = setup(root);
    let text = format!("{}[sampler]\n{sampler}", cfg.to_toml().unwrap());
    cfg = GrpoConfig::from_toml_str(&text, &[]).unwrap();
    cfg
}

#[test]
fn mopps_sampler_logs_telemetry_and_resumes_exactly() {
    let root = tempfile::tempdir().unwrap();
    // The whole dataset (6 prompts) is the candidate pool; MoPPS picks 3 each step.
    let cfg = with_sampler(
        root.path(),
        "method = \"mopps\"\ncandidate_ratio = 0\nseed = 5\n",
    );
    assert_eq!(run(&cfg, &Launch::fresh()).unwrap().steps, 3);
    let full = metrics(&cfg.metrics_path());
    assert_eq!(full.len(), 3);
    for (i, m) in full.iter().enumerate() {
        assert_eq!(m["rollouts_used"], (i as u64 + 1) * 3 * 8, "{m}");
        let eff = m["sampler_effective_ratio"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&eff), "{m}");
        assert!(m["sampler_select_us"].is_u64() && m["sampler_update_us"].is_u64());
        assert!(m["sampler_brier"].as_f64().unwrap().is_finite(), "{m}");
        assert!(m.get("sampler_spearman").is_some(), "{m}");
    }
    let ck = root.path().join("run/checkpoint-1");
    assert!(ck.join("sampler.json").exists());

    let keys: Vec<&str> = SAME.iter().chain(&SAME_SAMPLER).copied().collect();
    resume_and_compare(&cfg, &root.path().join("resumed"), &ck, &full, &keys);
    // The saved sampler states agree too (same predictor posteriors, same RNG position).
    let end = std::fs::read(root.path().join("run/checkpoint-3/sampler.json")).unwrap();
    let end2 = std::fs::read(root.path().join("resumed/checkpoint-3/sampler.json")).unwrap();
    assert_eq!(end, end2);

    // Resuming a sampler checkpoint without a [sampler] section is refused, naming the problem.
    let mut plain = setup(root.path());
    plain.checkpoint.dir = root.path().join("plain");
    let err = run(&plain, &Launch::resume(&ck)).unwrap_err();
    assert!(err.to_string().contains("sampler"), "{err}");
}

#[test]
fn ds_counts_every_round_and_gps_embeds_prompts() {
    let root = tempfile::tempdir().unwrap();
    let mut cfg = with_sampler(
        root.path(),
        "method = \"ds\"\ncandidate_ratio = 0\n[sampler.ds]\nmax_rounds = 2\n",
    );
    cfg.algorithm.steps = 1;
    cfg.checkpoint.every = 0;
    run(&cfg, &Launch::fresh()).unwrap();
    let m = &metrics(&cfg.metrics_path())[0];
    let rounds = m["ds_rounds"].as_u64().unwrap();
    assert!((1..=2).contains(&rounds), "{m}");
    assert_eq!(m["rollouts_used"], rounds * 3 * 8, "{m}");
    assert!(root.path().join("run/checkpoint-1/sampler.json").exists());

    let root = tempfile::tempdir().unwrap();
    let mut cfg = with_sampler(root.path(), "method = \"gps\"\ncandidate_ratio = 0\n");
    cfg.algorithm.steps = 2;
    cfg.checkpoint.every = 0;
    run(&cfg, &Launch::fresh()).unwrap();
    let ms = metrics(&cfg.metrics_path());
    assert_eq!(ms.len(), 2);
    assert!(
        ms[1]["sampler_brier"].as_f64().unwrap().is_finite(),
        "{:?}",
        ms[1]
    );
    // A rerun in the same folder reads the cached embeddings and chooses the same prompts.
    let cache = root.path().join("run/prompt_embeddings.safetensors");
    let written = std::fs::metadata(&cache).unwrap().modified().unwrap();
    let rerun = Launch {
        overwrite: true,
        ..Launch::fresh()
    };
    run(&cfg, &rerun).unwrap();
    assert_eq!(
        std::fs::metadata(&cache).unwrap().modified().unwrap(),
        written
    );
    assert_eq!(
        metrics(&cfg.metrics_path())[1]["sampler_brier"],
        ms[1]["sampler_brier"]
    );
}

#[test]
fn embedding_cache_is_keyed_by_prompts_and_model() {
    use augur_model::{load_model, BuildOptions};
    use augur_train::grpo::embed::cached_mean_pooled_hidden;
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let tokenizer = fixtures.join("char-tokenizer");
    let loaded = load_model(
        &fixtures.join("parity/llama"),
        Some(&tokenizer),
        &BuildOptions::default(),
    )
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("emb.safetensors");
    let rows = vec![vec![40u32, 41], vec![50, 51, 52]];
    let embed = |key: &str, rows: &[Vec<u32>]| {
        cached_mean_pooled_hidden(&cache, key, &loaded.model, rows, 0, 8).unwrap()
    };
    let (first, hit) = embed("m", &rows);
    assert!(!hit);
    assert_eq!(embed("m", &rows), (first.clone(), true));
    assert!(!embed("other-model", &rows).1);
    let (changed, hit) = embed("other-model", &[vec![40, 41], vec![50, 51, 53]]);
    assert!(!hit);
    assert_ne!(changed[first.len() / 2..], first[first.len() / 2..]);
    std::fs::write(&cache, b"garbage").unwrap();
    assert_eq!(embed("m", &rows), (first, false));
}

#[test]
fn prompt_embeddings_ignore_padding() {
    use augur_model::{load_model, BuildOptions};
    use augur_train::grpo::embed::mean_pooled_hidden;
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let (fixture, tokenizer) = (
        fixtures.join("parity/llama"),
        fixtures.join("char-tokenizer"),
    );
    let loaded = load_model(&fixture, Some(&tokenizer), &BuildOptions::default()).unwrap();
    let (short, long) = (vec![40u32, 41, 42], vec![50u32, 51, 52, 53, 54, 55]);
    let alone = mean_pooled_hidden(&loaded.model, std::slice::from_ref(&short), 0, 8).unwrap();
    let both = mean_pooled_hidden(&loaded.model, &[short, long], 0, 8).unwrap();
    let h = alone.len();
    assert_eq!(both.len(), 2 * h);
    for (a, b) in alone.iter().zip(&both[..h]) {
        assert!(
            (a - b).abs() < 1e-4,
            "{a} vs {b}: padding leaks into the mean"
        );
    }
    // Chunking does not change the result.
    let one_by_one = mean_pooled_hidden(
        &loaded.model,
        &[vec![40, 41, 42], vec![50, 51, 52, 53, 54, 55]],
        0,
        1,
    )
    .unwrap();
    for (a, b) in one_by_one.iter().zip(&both) {
        assert!((a - b).abs() < 1e-4);
    }
}

#[test]
fn mini_batches_are_separate_optimizer_steps() {
    let root = tempfile::tempdir().unwrap();
    let mut cfg = setup(root.path());
    // 3 prompts x 8 completions = 24 per batch: mini-batches of 10 → 3 steps per epoch, x 2 epochs.
    cfg.algorithm.mini_batch_size = 10;
    cfg.algorithm.ppo_epochs = 2;
    cfg.algorithm.steps = 1;
    assert_eq!(cfg.optimizer_steps_per_batch(), 6);
    run(&cfg, &Launch::fresh()).unwrap();
    let m = &metrics(&cfg.metrics_path())[0];
    assert_eq!(m["optimizer_steps"], 6, "{m}");
    assert!(m["loss"].as_f64().unwrap().is_finite(), "{m}");
}
