//! Every dataset recipe (`[data] recipe = NAME`) works on its data as users hold it: the first
//! rows of the shared copy (`../shared/datasets/NAME`), read from JSONL and from a Parquet split
//! served by the fake Hub (`[data] train = "hub:org/name:split"`), become prompts whose
//! reference answer, written as a model would write it, scores 1 through the real verifier, and
//! a wrong answer 0.

use std::path::{Path, PathBuf};

use augur_data::testing::write_parquet;
use augur_hub::fake::FakeHub;
use augur_reward::jsonl::{verifier_for, ScoreOptions, TaskKind};
use augur_train::grpo::data::{load_prompts, Prompt};
use augur_train::grpo::GrpoConfig;
use serde_json::{Map, Value};

const ROWS: usize = 5;

/// (recipe, file under ../shared/datasets, text the prompt must contain).
const SETS: [(&str, &str, &str); 7] = [
    ("gsm8k", "gsm8k/train.jsonl", "question"),
    ("math500", "math500/test.jsonl", "problem"),
    ("aime24", "aime24/test.jsonl", "problem"),
    ("amc23", "amc23/test.jsonl", "problem"),
    ("countdown", "countdown/train.jsonl", "target"),
    ("humaneval", "humaneval/test.jsonl", "prompt"),
    ("mbpp", "mbpp/full.jsonl", "text"),
];

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/datasets")
        .join(rel)
}

fn first_rows(path: &Path) -> Vec<Map<String, Value>> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .take(ROWS)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The row's own solution as a model would write it, or a wrong one.
fn completion(recipe: &str, row: &Map<String, Value>, wrong: bool) -> String {
    let s = |k: &str| {
        row[k]
            .as_str()
            .unwrap_or_else(|| panic!("{recipe}: {k}"))
            .to_string()
    };
    match (recipe, wrong) {
        ("gsm8k", false) => format!("Adding up, the answer is \\boxed{{{}}}.", s("final")),
        ("math500" | "aime24" | "amc23", false) => format!("So \\boxed{{{}}}.", s("answer")),
        ("gsm8k" | "math500" | "aime24" | "amc23", true) => "So \\boxed{-99991}.".into(),
        ("countdown", false) => format!("<answer>{}</answer>", s("reference")),
        ("countdown", true) => "<answer>1 + 1</answer>".into(),
        ("humaneval", false) => format!("```python\n{}```", s("canonical_solution")),
        ("mbpp", false) => format!("Here it is:\n```python\n{}\n```", s("code")),
        ("humaneval" | "mbpp", true) => "```python\ndef nothing():\n    return None\n```".into(),
        _ => unreachable!(),
    }
}

fn config(recipe: &str, train: &Path) -> GrpoConfig {
    let text = format!(
        "[model]\npath = \"m.gguf\"\n[data]\nrecipe = \"{recipe}\"\ntrain = {:?}\n",
        train.to_str().unwrap()
    );
    GrpoConfig::from_toml_str(&text, &[]).unwrap_or_else(|e| panic!("{recipe}: {e}"))
}

/// Every prompt's own solution scores correct and a wrong one does not.
fn score(recipe: &str, cfg: &GrpoConfig, prompts: &[Prompt], rows: &[Map<String, Value>]) {
    let task: TaskKind = cfg.reward.task.parse().unwrap();
    let verifier = verifier_for(task, &ScoreOptions::default()).unwrap();
    assert_eq!(prompts.len(), rows.len(), "{recipe}");
    for (p, row) in prompts.iter().zip(rows) {
        for wrong in [false, true] {
            let got = verifier.score(&completion(recipe, row, wrong), &p.reference);
            assert_eq!(
                got.correct,
                !wrong,
                "{recipe} {} (wrong answer: {wrong}): {got:?}",
                p.origin()
            );
        }
    }
}

#[test]
fn every_recipe_scores_its_own_references_from_jsonl_and_from_a_hub_parquet_split() {
    let hub = FakeHub::start();
    let dir = tempfile::tempdir().unwrap();
    // Hub splits are fetched through the environment's Hub, as `augur grpo` does.
    std::env::set_var("HF_ENDPOINT", hub.url());
    std::env::set_var("HF_HUB_CACHE", dir.path().join("hf-cache"));
    std::env::remove_var("HF_TOKEN");
    std::env::remove_var("HF_HUB_OFFLINE");
    for (recipe, rel, field) in SETS {
        let rows = first_rows(&shared(rel));
        let jsonl = dir.path().join(format!("{recipe}.jsonl"));
        let text: Vec<String> = rows
            .iter()
            .map(|r| Value::Object(r.clone()).to_string())
            .collect();
        std::fs::write(&jsonl, text.join("\n")).unwrap();

        let parquet = dir.path().join(format!("{recipe}.parquet"));
        write_parquet(&parquet, &rows);
        hub.add_dataset(
            &format!("test-org/{recipe}"),
            &[(
                "data/test-00000-of-00001.parquet",
                std::fs::read(&parquet).unwrap(),
            )],
        );
        let hub_split = PathBuf::from(format!("hub:test-org/{recipe}:test"));

        for train in [jsonl, parquet, hub_split] {
            let cfg = config(recipe, &train);
            let recipe_spec = augur_data::recipe(recipe).unwrap();
            assert_eq!(cfg.reward.task, recipe_spec.task);
            assert_eq!(cfg.data.template.as_deref(), Some(recipe_spec.template));
            let prompts = load_prompts(&cfg.data.train, &cfg.prompt_spec().unwrap())
                .unwrap_or_else(|e| panic!("{recipe} {}: {e}", train.display()));
            // The prompt carries the row's text.
            let shown = match &rows[0][field] {
                Value::String(s) => s.lines().next().unwrap_or("").to_string(),
                v => v.to_string(),
            };
            assert!(
                prompts[0].text.contains(&shown),
                "{recipe}: {}",
                prompts[0].text
            );
            score(recipe, &cfg, &prompts, &rows);
        }
    }
}

#[test]
fn config_keys_win_over_the_recipe_and_unknown_recipes_are_named() {
    let base = "[model]\npath = \"m.gguf\"\n[data]\ntrain = \"t.jsonl\"\n";
    let cfg = GrpoConfig::from_toml_str(
        &format!("{base}recipe = \"gsm8k\"\ntemplate = \"Q: {{question}}\"\n[reward]\nanswer_field = \"final\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(cfg.data.template.as_deref(), Some("Q: {question}"));
    assert_eq!(cfg.reward.answer_field.as_deref(), Some("final"));
    assert_eq!(cfg.reward.task, "math");
    // The saved config holds what was used, and loads back the same.
    let back = GrpoConfig::from_toml_str(&cfg.to_toml().unwrap(), &[]).unwrap();
    assert_eq!(back, cfg);

    let cfg = GrpoConfig::from_toml_str(base, &["data.recipe=mbpp".into()]).unwrap();
    assert_eq!(cfg.reward.task, "code");
    let err = GrpoConfig::from_toml_str(&format!("{base}recipe = \"gsm9k\"\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("data.recipe (line 5): unknown recipe \"gsm9k\"") && err.contains("mbpp"),
        "{err}"
    );
}
