//! The file-level entry point behind `augur score`.

use augur_reward::{score_jsonl, ScoreOptions, TaskKind};
use serde_json::Value;

fn run(task: TaskKind, lines: &[&str]) -> (augur_reward::ScoreSummary, Vec<Value>) {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("score-{task:?}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.jsonl");
    let output = dir.join("out.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let summary = score_jsonl(task, &input, &output, &ScoreOptions::default()).unwrap();
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
        &ScoreOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains(":1:"), "{err}");
}
