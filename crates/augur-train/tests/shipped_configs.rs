//! Every GRPO config shipped in `configs/` loads, and its data scores the way a model's answer
//! would: for the first lines of its train and eval files, the gold answer written as a model
//! writes it scores 1, a wrong one scores 0, and the prompt that would be sent renders through
//! the chat template. This is the test that would have caught GSM8K's `answer` field (a whole
//! worked solution) being taken as the reference, which made every shipped GSM8K run score 0.

use std::path::{Path, PathBuf};

use augur_reward::jsonl::{verifier_for, ScoreOptions, TaskKind};
use augur_reward::Reference;
use augur_rollout::{ChatTemplate, Message};
use augur_train::grpo::GrpoConfig;
use serde_json::{Map, Value};

const LINES_PER_FILE: usize = 5;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Config paths are relative to the repository root (where the README runs `augur`).
fn at_root(p: &Path) -> PathBuf {
    match p.is_absolute() {
        true => p.to_path_buf(),
        false => repo_root().join(p),
    }
}

/// Every `*.toml` under `configs/`, except SFT configs (tested with `augur sft`).
fn shipped_grpo_configs() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![repo_root().join("configs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                dirs.push(path);
            } else if name.ends_with(".toml") && !name.starts_with("sft") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A completion that states `gold` the way the prompt asks for it.
fn completion_for(task: TaskKind, reference: &Reference, wrong: bool) -> String {
    match (task, reference) {
        (TaskKind::Math, Reference::Math { answer }) => {
            let answer = match (wrong, answer.trim().parse::<f64>()) {
                (false, _) => answer.clone(),
                (true, Ok(x)) => format!("{}", x + 1.0),
                (true, Err(_)) => format!("{answer} + 1"),
            };
            format!("Let me work it out step by step.\nThe final answer is \\boxed{{{answer}}}.")
        }
        (TaskKind::Countdown, Reference::Countdown { numbers, .. }) => {
            // A wrong expression: all numbers added (checked below to miss the target).
            let sum: Vec<String> = numbers.iter().map(i64::to_string).collect();
            format!("<answer>{}</answer>", sum.join(" + "))
        }
        other => panic!("unexpected task/reference {other:?}"),
    }
}

fn first_lines(path: &Path) -> Vec<Map<String, Value>> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(LINES_PER_FILE)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The chat template of the config's model family: Qwen's for `Qwen/...` models (from the Qwen
/// tokenizer that scripts/fetch-assets.sh fetches), ChatML otherwise.
fn chat_template_for(cfg: &GrpoConfig) -> ChatTemplate {
    let qwen = cfg.model.name.as_deref().unwrap_or("").starts_with("Qwen/");
    let cache = std::env::var_os("AUGUR_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/augur"));
    let tok_cfg = cache.join("qwen3-tokenizer/tokenizer_config.json");
    let template = match (qwen, std::fs::read_to_string(&tok_cfg)) {
        (true, Ok(text)) => {
            let v: Value = serde_json::from_str(&text).unwrap();
            v["chat_template"].as_str().map(str::to_string)
        }
        _ => None,
    };
    ChatTemplate::new(template.as_deref(), None, Some("<|im_end|>")).unwrap()
}

#[test]
fn every_shipped_config_scores_its_own_data() {
    let configs = shipped_grpo_configs();
    assert!(configs.len() >= 8, "found only {configs:?}");
    let mut checked = 0;
    for path in &configs {
        let cfg = GrpoConfig::load(path, &[]).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(path).unwrap();
        let spec = cfg.prompt_spec().unwrap();
        let verifier = verifier_for(spec.task, &ScoreOptions::default()).unwrap();
        let chat = chat_template_for(&cfg);
        let mut files = vec![at_root(&cfg.data.train)];
        files.extend(cfg.eval.as_ref().map(|e| at_root(&e.file)));
        // Data outside this repo (e.g. the MATH train split) must be explained in the config,
        // and a file of the same shape (the eval set) must be present to test with.
        let present: Vec<&PathBuf> = files.iter().filter(|f| f.exists()).collect();
        for missing in files.iter().filter(|f| !f.exists()) {
            assert!(
                text.lines().any(|l| l.starts_with("# Data")),
                "{}: {} is not in the repo and the config does not say how to get it",
                path.display(),
                missing.display()
            );
        }
        assert!(
            !present.is_empty(),
            "{}: no data file present",
            path.display()
        );
        for file in present {
            for (i, line) in first_lines(file).iter().enumerate() {
                let at = format!("{} ({}:{})", path.display(), file.display(), i + 1);
                let prompt = spec
                    .prompt_of(
                        line,
                        augur_data::RowAt {
                            file: file.as_path().into(),
                            position: augur_data::Position::Line(i + 1),
                        },
                    )
                    .unwrap_or_else(|e| panic!("{at}: {e}"));
                if let Some(t) = &cfg.data.template {
                    let instruction = t.rsplit('}').next().unwrap_or_default();
                    assert!(
                        prompt.text.ends_with(instruction),
                        "{at}: {:?}",
                        prompt.text
                    );
                }
                let rendered = chat.render(&[Message::user(&prompt.text)], true).unwrap();
                assert!(rendered.contains(&prompt.text), "{at}: {rendered}");
                let right = match (&prompt.reference, line.get("reference")) {
                    (Reference::Countdown { .. }, Some(Value::String(expr))) => {
                        format!("<answer>{expr}</answer>")
                    }
                    (r, _) => completion_for(spec.task, r, false),
                };
                let wrong = completion_for(spec.task, &prompt.reference, true);
                let scores = verifier.score_batch(&[
                    (right.as_str(), &prompt.reference),
                    (wrong.as_str(), &prompt.reference),
                ]);
                if let Reference::Countdown { numbers, target } = &prompt.reference {
                    if numbers.iter().sum::<i64>() == *target {
                        continue; // the "wrong" sum happens to be right
                    }
                }
                assert!(scores[0].correct, "{at}: {right:?} -> {:?}", scores[0]);
                assert!(!scores[1].correct, "{at}: {wrong:?} -> {:?}", scores[1]);
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 8 * LINES_PER_FILE,
        "only {checked} lines checked"
    );
}

/// The GSM8K configs read the `final` field, and those that start from the base model ask for a
/// boxed answer, so a `\boxed{}` completion is judged on its box, not on the last number of the
/// text. (A run warm-started from the SFT adapter keeps the bare question the adapter was
/// trained on, which answers `... #### n`.)
#[test]
fn gsm8k_configs_ask_for_a_boxed_final_answer() {
    for path in shipped_grpo_configs() {
        let cfg = GrpoConfig::load(&path, &[]).unwrap();
        if !cfg.data.train.to_string_lossy().contains("gsm8k") {
            continue;
        }
        if cfg.model.adapter.is_none() {
            let template = cfg.data.template.as_deref().unwrap_or_default();
            assert!(template.contains("\\boxed{}"), "{}", path.display());
        }
        assert_eq!(
            cfg.reward.answer_field.as_deref(),
            Some("final"),
            "{}",
            path.display()
        );
    }
}
