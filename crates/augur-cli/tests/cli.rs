//! The `augur` binary end to end: each subcommand on small inputs.

use std::io::Write;
use std::process::{Command, Stdio};

fn augur() -> Command {
    Command::new(env!("CARGO_BIN_EXE_augur"))
}

#[test]
fn score_math_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        "{\"completion\": \"so \\\\boxed{\\\\frac{1}{2}}\", \"answer\": \"0.5\"}\n{\"completion\": \"The answer is 7\", \"answer\": \"8\"}\n",
    )
    .unwrap();
    let output = dir.path().join("out.jsonl");
    let st = augur()
        .args(["score", "--task", "math", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .status()
        .unwrap();
    assert!(st.success());
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["correct"], true);
    assert_eq!(lines[1]["correct"], false);
}

#[test]
fn sampler_speaks_json_lines() {
    let mut child = augur()
        .args(["sampler", "--method", "dps"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"op\":\"select\",\"candidates\":[0,1,2,3],\"b\":2}\n{\"op\":\"observe\",\"outcomes\":[[0,3,8]]}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let replies: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replies[0]["ids"].as_array().unwrap().len(), 2);
    assert_eq!(replies[1]["telemetry"]["rollouts"], 8);
}

#[test]
fn ablate_simulate_writes_table_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let st = augur()
        .args([
            "ablate",
            "--simulate",
            "--samplers",
            "uniform,mopps",
            "--seeds",
            "1",
            "--out",
        ])
        .arg(dir.path())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    for f in [
        "runs.csv",
        "summary.md",
        "accuracy_vs_rollouts.png",
        "effective_ratio.svg",
    ] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
}

#[test]
fn bad_input_gives_clear_errors() {
    let out = augur()
        .args([
            "generate",
            "--model",
            "/nonexistent/model.gguf",
            "--prompt",
            "hi",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("/nonexistent/model.gguf"), "{err}");
    let out = augur()
        .args(["generate", "--model", "x", "--prompt", "hi", "--top-p", "2"])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("top_p"), "{err}");
}
