//! `augur sft` end to end on the tiny random Llama fixture: every selection method trains K of
//! N per step, deterministically for a seed; a run resumed from a checkpoint reproduces the
//! uninterrupted one (metrics and adapter bytes); the held-out loss falls; a used run folder
//! is refused; the adapter loads the way `augur export` loads it.

use std::path::{Path, PathBuf};

use augur_train::sft::{run_with, Launch, SftConfig};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The fixture's one-character-per-id vocabulary, split on whitespace (so "1 2 3" is three
/// tokens) instead of one word per text.
fn write_tokenizer(dir: &Path) {
    let text = std::fs::read_to_string(fixtures().join("char-tokenizer/tokenizer.json")).unwrap();
    let mut tok: Value = serde_json::from_str(&text).unwrap();
    tok["pre_tokenizer"] = serde_json::json!({"type": "WhitespaceSplit"});
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
}

/// Prompts of 2–4 letters; the completion is a fixed function of the prompt (learnable).
fn write_data(path: &Path, n: usize, offset: usize) {
    let letters = "abcdefghijklmnopqrstuvwxyz".as_bytes();
    let lines: String = (0..n)
        .map(|i| {
            let i = i + offset;
            let len = 2 + i % 3;
            let prompt: Vec<String> = (0..len)
                .map(|j| (letters[(i * 7 + j * 3) % 26] as char).to_string())
                .collect();
            let completion: Vec<String> = (0..1 + i % 4)
                .map(|j| ((b'0' + ((i + j) % 10) as u8) as char).to_string())
                .collect();
            format!(
                "{{\"question\": \"{}\", \"answer\": \"{}\"}}\n",
                prompt.join(" "),
                completion.join(" ")
            )
        })
        .collect();
    std::fs::write(path, lines).unwrap();
}

fn config(root: &Path, method: &str, extra: &[&str]) -> SftConfig {
    write_tokenizer(&root.join("tok"));
    write_data(&root.join("train.jsonl"), 24, 0);
    write_data(&root.join("eval.jsonl"), 6, 24);
    let toml = format!(
        "[model]\npath = {model:?}\ntokenizer = {tok:?}\n[lora]\nrank = 4\nalpha = 8.0\ntargets = [\"q\", \"v\", \"down\"]\n\
         [data]\ntrain = {train:?}\nraw = true\nmax_seq_len = 7\n[train]\nsteps = 4\nmicro_batch_size = 2\n\
         [selection]\nmethod = {method:?}\ncandidates = 6\nkeep = 3\n\
         [optimizer.schedule]\nlr = 2e-2\nkind = \"constant\"\n[eval]\nfile = {eval:?}\nevery = 2\n\
         [checkpoint]\ndir = {dir:?}\nevery = 2\n[logging]\nprint = false\n",
        model = fixtures().join("parity/llama"),
        tok = root.join("tok"),
        train = root.join("train.jsonl"),
        eval = root.join("eval.jsonl"),
        dir = root.join("run"),
    );
    let sets: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    SftConfig::from_toml_str(&toml, &sets).unwrap()
}

fn metrics(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn train_lines(m: &[Value]) -> Vec<&Value> {
    m.iter().filter(|l| l.get("loss").is_some()).collect()
}

const SAME: [&str; 7] = [
    "loss",
    "grad_norm",
    "lr",
    "selected",
    "eval_loss",
    "select_score_mean",
    "uds_inter_mean",
];

#[test]
fn every_method_keeps_k_of_n_resumes_exactly_and_is_seeded() {
    for method in ["uniform", "uds", "maxloss", "rho"] {
        let root = tempfile::tempdir().unwrap();
        let cfg = config(root.path(), method, &[]);
        let summary = run_with(&cfg, &Launch::fresh(), &mut |_| {}).unwrap();
        assert_eq!(summary.steps, 4);
        // The length cap: prompts of 4 letters with 3–4 digit answers + EOS exceed 7 tokens.
        assert!(summary.data.truncated > 0, "{:?}", summary.data);
        let full = metrics(&cfg.metrics_path());
        let steps = train_lines(&full);
        assert_eq!(steps.len(), 4);
        for l in &steps {
            assert_eq!(l["samples"], 3, "{method}: {l}");
            assert_eq!(l["candidates"], 6, "{method}: {l}");
            let mut sel: Vec<u64> = l["selected"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            sel.dedup();
            assert_eq!(sel.len(), 3, "{method}: {l}");
            assert!(l["loss"].as_f64().unwrap().is_finite());
            assert!(l["time_score_s"].as_f64().unwrap() >= 0.0);
            if method != "uniform" {
                // The chosen K score at least as high as the N on average.
                let (s, c) = (
                    l["select_score_mean"].as_f64().unwrap(),
                    l["candidate_score_mean"].as_f64().unwrap(),
                );
                assert!(s >= c - 1e-12, "{method}: {l}");
            }
        }
        if method == "uds" {
            // The buffer starts empty: no diversity term on step 1; 3 sketches per step after.
            assert_eq!(steps[0]["uds_inter_mean"], 0.0);
            assert!(steps[1]["uds_inter_mean"].as_f64().unwrap() > 0.0);
            assert_eq!(steps[3]["uds_buffer"], 12);
        }

        // Resume from step 2 into another folder: steps 3 and 4 as in the uninterrupted run.
        let mut resumed = cfg.clone();
        resumed.checkpoint.dir = root.path().join("resumed");
        run_with(
            &resumed,
            &Launch::resume(root.path().join("run/checkpoint-2")),
            &mut |_| {},
        )
        .unwrap();
        let again = metrics(&resumed.metrics_path());
        let again = train_lines(&again);
        assert_eq!(again.len(), 2, "{method}");
        for (a, b) in steps[2..].iter().zip(&again) {
            assert_eq!(a["step"], b["step"]);
            for k in SAME {
                assert_eq!(
                    a.get(k),
                    b.get(k),
                    "{method}: {k} differs at step {}",
                    a["step"]
                );
            }
        }
        let adapter = |d: &str| {
            std::fs::read(
                root.path()
                    .join(d)
                    .join("checkpoint-4/adapter_model.safetensors"),
            )
            .unwrap()
        };
        assert_eq!(
            adapter("run"),
            adapter("resumed"),
            "{method}: adapters differ"
        );

        // The same seed again gives the same choices; a fresh run may not reuse the folder.
        let err = run_with(&cfg, &Launch::fresh(), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("already holds a run"), "{err}");
        let mut rerun = cfg.clone();
        rerun.checkpoint.dir = root.path().join("rerun");
        run_with(&rerun, &Launch::fresh(), &mut |_| {}).unwrap();
        let rerun = metrics(&rerun.metrics_path());
        for (a, b) in steps.iter().zip(train_lines(&rerun)) {
            assert_eq!(a["selected"], b["selected"], "{method}");
        }
    }
}

/// Scoring runs candidates in length-sorted micro-batches, so each score must find its way
/// back to its candidate: the same examples offered in another order, or scored in another
/// micro-batch size, must be chosen alike. (RHO-lite is left out: with fresh adapters the
/// policy is the reference, every score ties, and ties go to the earlier candidate.)
#[test]
fn the_choice_does_not_depend_on_candidate_order_or_micro_batch() {
    use augur_train::policy::load_policy;
    use augur_train::sft::data::Example;
    use augur_train::sft::selection::Selector;

    let root = tempfile::tempdir().unwrap();
    // Lengths 3..=10 in a scrambled order, the last two tokens of each trained on.
    let examples: Vec<Example> = [7usize, 3, 10, 5, 8, 4, 9, 6]
        .iter()
        .enumerate()
        .map(|(i, &n)| Example {
            ids: (0..n).map(|j| 3 + ((i * 5 + j * 3) % 20) as u32).collect(),
            trainable: (0..n).map(|j| j + 2 >= n).collect(),
            truncated: false,
        })
        .collect();
    let forward: Vec<usize> = (0..examples.len()).collect();
    let backward: Vec<usize> = forward.iter().rev().copied().collect();
    for method in ["uds", "maxloss"] {
        let cfg = config(
            root.path(),
            method,
            &["selection.candidates=8", "data.max_seq_len=12"],
        );
        let policy = load_policy(&cfg.model, &cfg.lora).unwrap();
        let model = &policy.loaded.model;
        let choose = |candidates: &[usize], micro: usize| {
            let mut selector =
                Selector::new(&cfg.selection, model.cfg.vocab_size, cfg.data.max_seq_len);
            let mut chosen = selector
                .choose(model, &examples, candidates, 1, micro, 0)
                .unwrap()
                .chosen;
            chosen.sort_unstable();
            chosen
        };
        let reference = choose(&forward, 1);
        assert_eq!(reference.len(), 3, "{method}");
        for micro in [1, 3, 8] {
            assert_eq!(
                choose(&backward, micro),
                reference,
                "{method}, micro {micro}"
            );
            assert_eq!(
                choose(&forward, micro),
                reference,
                "{method}, micro {micro}"
            );
        }
    }
}

#[test]
fn held_out_loss_falls_and_the_adapter_loads_for_export() {
    let root = tempfile::tempdir().unwrap();
    let cfg = config(
        root.path(),
        "uniform",
        &[
            "train.steps=12",
            "selection.candidates=4",
            "selection.keep=4",
            "eval.every=0",
        ],
    );
    let summary = run_with(&cfg, &Launch::fresh(), &mut |_| {}).unwrap();
    let (first, last) = (summary.eval_losses[0], *summary.eval_losses.last().unwrap());
    assert_eq!((first.0, last.0), (0, 12));
    assert!(last.1 < 0.8 * first.1, "{:?}", summary.eval_losses);

    // What `augur export` does: attach the PEFT adapter to the base model.
    let ck = summary.final_checkpoint;
    let mut loaded = augur_model::load_model(
        &cfg.model.path,
        Some(&root.path().join("tok")),
        &Default::default(),
    )
    .unwrap();
    let peft = augur_model::peft::attach_peft_adapter(&mut loaded.model, &ck).unwrap();
    assert_eq!((peft.r, peft.lora_alpha), (4, 8.0));
    loaded
        .model
        .export_hf(&loaded.tokenizer, &root.path().join("merged"))
        .unwrap();
    assert!(root.path().join("merged/model.safetensors").exists());
}

#[test]
fn grpo_warm_starts_from_an_sft_adapter() {
    let root = tempfile::tempdir().unwrap();
    let cfg = config(root.path(), "uniform", &["train.steps=2"]);
    let sft = run_with(&cfg, &Launch::fresh(), &mut |_| {}).unwrap();
    let grpo = |adapter: &Path, extra: &str| {
        let toml = format!(
            "[model]\npath = {model:?}\ntokenizer = {tok:?}\nadapter = {adapter:?}\n\
             [lora]\nrank = 4\nalpha = {extra}\ntargets = [\"v\", \"q\", \"down\"]\n\
             [data]\ntrain = {train:?}\nraw = true\n[rollout]\nprompts_per_step = 2\ngroup_size = 2\nmax_new_tokens = 2\n\
             [algorithm]\nsteps = 1\n[checkpoint]\ndir = {dir:?}\n[logging]\nprint = false\n",
            model = cfg.model.path,
            tok = root.path().join("tok"),
            train = root.path().join("train.jsonl"),
            dir = root.path().join("grpo"),
        );
        augur_train::grpo::GrpoConfig::from_toml_str(&toml, &[]).unwrap()
    };
    let ok = grpo(&sft.final_checkpoint, "8.0");
    let policy = augur_train::policy::load_policy(&ok.model, &ok.lora).unwrap();
    // The adapters hold the SFT weights (B starts at zero, so a fresh init would be all 0).
    let saved = candle_core::safetensors::load(
        sft.final_checkpoint.join("adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let mut nonzero_b = 0;
    for (name, var) in policy.loaded.model.lora_vars() {
        let want = saved[&name]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let got = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(got, want, "{name}");
        nonzero_b += usize::from(name.contains("lora_B") && got.iter().any(|&x| x != 0.0));
    }
    assert!(nonzero_b > 0);
    augur_train::grpo::run(&ok, &augur_train::grpo::Launch::fresh()).unwrap();
    // A different alpha would rescale the adapters silently: an error naming the field.
    let bad = grpo(&sft.final_checkpoint, "16.0");
    let err = augur_train::policy::load_policy(&bad.model, &bad.lora)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("model.adapter") && err.contains("lora_alpha"),
        "{err}"
    );
}

/// `[train] packing = true` (the default) trains on the same examples with the same loss: a
/// step's loss and gradient norm equal the unpacked step's (the first step exactly up to
/// rounding; later steps follow the same weights).
#[test]
fn packing_keeps_the_step_loss() {
    let root = tempfile::tempdir().unwrap();
    let plain = config(
        root.path(),
        "uniform",
        &["train.steps=3", "train.packing=false"],
    );
    assert!(!plain.train.packing);
    run_with(&plain, &Launch::fresh(), &mut |_| {}).unwrap();
    let mut packed = config(
        root.path(),
        "uniform",
        &["train.steps=3", "train.packing=true"],
    );
    packed.checkpoint.dir = root.path().join("packed");
    assert!(packed.train.packing);
    run_with(&packed, &Launch::fresh(), &mut |_| {}).unwrap();
    let (a, b) = (
        metrics(&plain.metrics_path()),
        metrics(&packed.metrics_path()),
    );
    let (a, b) = (train_lines(&a), train_lines(&b));
    assert_eq!(a.len(), 3);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["selected"], y["selected"]);
        assert_eq!(x["target_tokens"], y["target_tokens"]);
        for k in ["loss", "grad_norm"] {
            let (p, q) = (x[k].as_f64().unwrap(), y[k].as_f64().unwrap());
            assert!(
                (p - q).abs() < 1e-5 * p.abs().max(1.0),
                "step {}: {k} {p} vs {q}",
                x["step"]
            );
        }
    }
}

/// `[lora] enabled = false` trains every weight: the held-out loss falls, a resumed run
/// reproduces the uninterrupted one (metrics and weights bytes), and the checkpoint is an HF
/// model folder that loads as a model.
#[test]
fn full_fine_tuning_learns_resumes_exactly_and_saves_a_model() {
    let root = tempfile::tempdir().unwrap();
    let cfg = config(
        root.path(),
        "maxloss",
        &[
            "lora.enabled=false",
            "optimizer.schedule.lr=2e-3",
            "train.steps=8",
        ],
    );
    let summary = run_with(&cfg, &Launch::fresh(), &mut |_| {}).unwrap();
    let (first, last) = (summary.eval_losses[0], *summary.eval_losses.last().unwrap());
    assert_eq!((first.0, last.0), (0, 8));
    assert!(last.1 < first.1, "{:?}", summary.eval_losses);
    let ck = summary.final_checkpoint.clone();
    assert!(ck.join("model.safetensors").is_file() && !ck.join("adapter_config.json").exists());

    let mut resumed = cfg.clone();
    resumed.checkpoint.dir = root.path().join("resumed");
    run_with(
        &resumed,
        &Launch::resume(root.path().join("run/checkpoint-2")),
        &mut |_| {},
    )
    .unwrap();
    let full = metrics(&cfg.metrics_path());
    let again = metrics(&resumed.metrics_path());
    let (steps, again) = (train_lines(&full), train_lines(&again));
    for (a, b) in steps[2..].iter().zip(&again) {
        for k in SAME {
            assert_eq!(a.get(k), b.get(k), "{k} differs at step {}", a["step"]);
        }
    }
    let weights = |d: &str| {
        std::fs::read(root.path().join(d).join("checkpoint-8/model.safetensors")).unwrap()
    };
    assert_eq!(weights("run"), weights("resumed"), "weights differ");

    // The checkpoint is a model: it loads (tokenizer included) and differs from the base.
    let tuned = augur_model::load_model(&ck, None, &Default::default()).unwrap();
    let base = augur_model::load_model(
        &cfg.model.path,
        Some(&root.path().join("tok")),
        &Default::default(),
    )
    .unwrap();
    let (t, b) = (
        tuned.model.merged_tensors().unwrap(),
        base.model.merged_tensors().unwrap(),
    );
    assert_eq!(t.len(), b.len());
    let moved = t.keys().filter(|k| {
        let d = (&t[*k] - &b[*k]).unwrap().abs().unwrap().max_all().unwrap();
        d.to_scalar::<f32>().unwrap() > 0.0
    });
    assert_eq!(moved.count(), t.len(), "every weight trains");

    // A LoRA run cannot resume a full checkpoint (and says why); RHO has no reference here.
    let err = run_with(
        &config(root.path(), "maxloss", &[]),
        &Launch::resume(ck.clone()),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("lora] enabled = false"), "{err}");
    let toml = std::fs::read_to_string(ck.join("config.toml")).unwrap();
    let err = SftConfig::from_toml_str(&toml, &["selection.method=rho".into()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("selection.method") && err.contains("rho"),
        "{err}"
    );
}
