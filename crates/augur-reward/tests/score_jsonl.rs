//! The file-level entry point behind `augur score`.

use augur_reward::{score_jsonl, ScoreOptions, TaskKind};
use serde_json::Value;

fn run(task: TaskKind, lines: &[&str]) -> (augur_reward::ScoreSummary, Vec<Value>) {
    run_with_field(task, lines, None)
}

fn run_with_field(
    task: TaskKind,
    lines: &[&str],
    answer_field: Option<&str>,
) -> (augur_reward::ScoreSummary, Vec<Value>) {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "score-{task:?}-{answer_field:?}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.jsonl");
    let output = dir.join("out.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let summary = score_jsonl(
        task,
        &input,
        &output,
        answer_field,
        &ScoreOptions::default(),
    )
    .unwrap();
    let out = std::fs::read_to_string(&output).unwrap();
    let rows = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (summary, rows)
}

#[test]
fn math_file() {
    let (s, rows) = run(
        TaskKind::Math,
        &[
            r#"{"id": 1, "completion": "so \\boxed{\\frac{1}{2}}", "answer": "0.5"}"#,
            r#####"{"id": 2, "completion": "#### 7", "final": "8"}"#####,
            r#"{"id": 3, "completion": "no idea", "answer": "3"}"#,
        ],
    );
    assert_eq!((s.total, s.correct), (3, 1));
    assert_eq!(rows[0]["verdict"], "correct");
    assert_eq!(rows[0]["extracted"], "\\frac{1}{2}");
    assert_eq!(rows[0]["id"], 1);
    assert_eq!(rows[1]["reason"], "wrong answer");
    assert_eq!(rows[2]["extracted"], Value::Null);
    assert_eq!(rows[2]["reward"], 0.0);
}

#[test]
fn countdown_and_code_files() {
    let (s, rows) = run(
        TaskKind::Countdown,
        &[
            r#"{"completion": "<answer>(87 - 3) / 2</answer>", "numbers": [87, 3, 2], "target": 42}"#,
        ],
    );
    assert_eq!(s.correct, 1);
    assert_eq!(rows[0]["reward"], 1.0);
    let (s, rows) = run(
        TaskKind::Code,
        &[
            r#"{"completion": "def f(x):\n    return x + 1", "test_list": ["assert f(1) == 2"]}"#,
            r#"{"completion": "print(int(input()) * 2)", "inputs": ["4\n"], "outputs": ["8\n"]}"#,
            r#"{"completion": "while True: pass", "asserts": ["assert True"]}"#,
        ],
    );
    assert_eq!((s.total, s.correct), (3, 2), "{rows:?}");
    assert_eq!(rows[2]["reason"], "timeout");
}

#[test]
fn bad_line_is_an_error() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let input = dir.join(format!("bad-{}.jsonl", std::process::id()));
    std::fs::write(&input, "{\"completion\": \"x\"}\n").unwrap();
    let err = score_jsonl(
        TaskKind::Math,
        &input,
        &dir.join("bad-out.jsonl"),
        None,
        &ScoreOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains(":1:"), "{err}");
}

/// The first line of the shipped GSM8K test file: its `answer` is the whole worked solution
/// ending in `#### 18`, and its `final` is `18`.
const GSM8K_LINE: &str = r#"{"question": "Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. How much in dollars does she make every day at the farmers' market?", "answer": "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day at the farmer’s market.\n#### 18", "final": "18"}"#;

/// `line` with a `completion` field added.
fn with_completion(line: &str, completion: &str) -> String {
    let mut obj: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
    obj.insert("completion".into(), completion.into());
    Value::Object(obj).to_string()
}

#[test]
fn gsm8k_lines_score_against_the_final_answer() {
    let right = with_completion(GSM8K_LINE, "She makes $18. \\boxed{18}");
    let wrong = with_completion(GSM8K_LINE, "\\boxed{9}");
    for field in [None, Some("final")] {
        let (s, rows) = run_with_field(TaskKind::Math, &[&right, &wrong], field);
        assert_eq!((s.total, s.correct), (2, 1), "{field:?}: {rows:?}");
        assert_eq!(rows[0]["verdict"], "correct");
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    }
    // Without `final`, the `#### 18` tail of the worked solution is the reference.
    let mut obj: serde_json::Map<String, Value> = serde_json::from_str(&right).unwrap();
    obj.remove("final");
    let (s, _) = run(TaskKind::Math, &[&Value::Object(obj).to_string()]);
    assert_eq!(s.correct, 1);
}

#[test]
fn the_shipped_gsm8k_file_scores_its_own_gold_answers() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/datasets/gsm8k/test.jsonl"
    );
    let Ok(text) = std::fs::read_to_string(path) else {
        eprintln!("skipped: {path} not present");
        return;
    };
    let lines: Vec<String> = text
        .lines()
        .take(20)
        .map(|l| {
            let obj: serde_json::Map<String, Value> = serde_json::from_str(l).unwrap();
            let gold = obj["final"].as_str().unwrap().to_string();
            with_completion(l, &format!("The answer is \\boxed{{{gold}}}."))
        })
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (s, rows) = run(TaskKind::Math, &refs);
    assert_eq!(s.correct, 20, "{rows:?}");
}

#[test]
fn a_reference_that_is_a_whole_solution_is_named_once() {
    // MATH-style: the worked `solution` named as the answer field by mistake.
    let line = r#"{"completion": "\\boxed{3}", "solution": "We have that $r = \\sqrt{0^2 + 3^2} = 3.$ The angle is $\\frac{\\pi}{2}$, so the answer is $\\boxed{(3,\\frac{\\pi}{2})}$."}"#;
    let (s, rows) = run_with_field(TaskKind::Math, &[line, line], Some("solution"));
    assert_eq!(s.correct, 0, "{rows:?}");
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(s.warnings[0].contains("in.jsonl:1: "), "{}", s.warnings[0]);
    assert!(s.warnings[0].contains("answer_field"), "{}", s.warnings[0]);
    // A named field that is missing is an error naming it.
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let input = dir.join(format!("nofield-{}.jsonl", std::process::id()));
    std::fs::write(&input, line).unwrap();
    let err = score_jsonl(
        TaskKind::Math,
        &input,
        &dir.join("nofield-out.jsonl"),
        Some("gold"),
        &ScoreOptions::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains(":1:") && err.to_string().contains("'gold'"),
        "{err}"
    );
}
