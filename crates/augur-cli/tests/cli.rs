//! The `augur` binary end to end: each subcommand on small inputs.

use std::io::Write;
use std::process::Stdio;

mod common;
use common::{augur, succeeded};

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

/// Runs `augur sampler ARGS` with `input` on stdin; (exit success, reply lines, stderr).
fn sampler_session(args: &[&str], input: &[u8]) -> (bool, Vec<serde_json::Value>, String) {
    let mut child = augur()
        .arg("sampler")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    let replies = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), replies, stderr)
}

/// Issue 13 finding 7: bytes that are not UTF-8 get an error line, the server keeps serving
/// and exits 0 at end of input. Also `--seed` and `--set` reach the sampler.
#[test]
fn sampler_survives_non_utf8_input_and_takes_seed_and_set() {
    let mut input = b"{\"op\":\"register\",\"count\":1000}\n".to_vec();
    input.extend_from_slice(&[0xff, 0xfe, 0x80, b'\n', 0xc3, 0x28, b'\n']);
    input.extend_from_slice(b"{\"op\":\"select\",\"b\":4}\n{\"op\":\"info\"}\n");
    let args = ["--method", "mopps", "--seed", "5", "--set", "gamma=0.3"];
    let (ok, replies, stderr) = sampler_session(&args, &input);
    assert!(ok, "{stderr}");
    assert_eq!(replies.len(), 5, "{replies:?}");
    assert_eq!(replies[1]["ok"], false);
    assert!(replies[1]["error"].as_str().unwrap().contains("not UTF-8"));
    assert_eq!(replies[2]["ok"], false);
    assert_eq!(replies[3]["ids"].as_array().unwrap().len(), 4);
    assert_eq!(replies[4]["name"], "beta+target");
    // The seed changes the selection; the same seed repeats it.
    let (_, same, _) = sampler_session(&args, &input);
    assert_eq!(same[3]["ids"], replies[3]["ids"]);
    let (_, other, _) = sampler_session(&["--method", "mopps", "--seed", "6"], &input);
    assert_ne!(other[3]["ids"], replies[3]["ids"]);
    // A misspelt --set key fails before serving, naming the key.
    let (ok, _, stderr) = sampler_session(&["--method", "dps", "--set", "dps.lamda=0.5"], b"");
    assert!(!ok);
    assert!(stderr.contains("lamda"), "{stderr}");
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
    // A device name that is neither cpu nor cuda[:N], and (in a CPU build) a GPU.
    for (device, why) in [("gpu", "expected `cpu`"), ("cuda:x", "expected `cuda:N`")] {
        let out = augur()
            .args([
                "generate", "--model", "x", "--prompt", "hi", "--device", device,
            ])
            .output()
            .unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            !out.status.success() && err.contains("--device") && err.contains(why),
            "{err}"
        );
    }
}

#[test]
fn grpo_trains_and_resumes_from_the_checkpoint_config() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let train = dir.path().join("train.jsonl");
    std::fs::write(
        &train,
        "{\"question\": \"1\", \"answer\": \"1\"}\n{\"question\": \"2\", \"answer\": \"2\"}\n",
    )
    .unwrap();
    let run = dir.path().join("run");
    let config = dir.path().join("grpo.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\npath = {:?}\ntokenizer = {:?}\n[data]\ntrain = {train:?}\nraw = true\n\
             [rollout]\nprompts_per_step = 2\ngroup_size = 4\nmax_new_tokens = 4\n\
             [algorithm]\nsteps = 2\n[eval]\nfile = {train:?}\n[checkpoint]\ndir = {run:?}\nevery = 1\n",
            fixtures.join("parity/llama"),
            fixtures.join("char-tokenizer"),
        ),
    )
    .unwrap();
    let out = augur()
        .args(["grpo", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = succeeded(&out);
    assert!(
        err.contains("step    2") && err.contains("eval acc"),
        "{err}"
    );
    assert!(err.contains("peak RSS"), "{err}");

    // No --config: the checkpoint's config.toml is used, and the run continues in its folder.
    let out = augur()
        .args(["grpo", "--set", "algorithm.steps=3", "--resume"])
        .arg(run.join("checkpoint-2"))
        .output()
        .unwrap();
    succeeded(&out);
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    // Step 0 is the evaluation before training.
    assert_eq!(steps, [0, 1, 2, 3]);
    assert!(run.join("checkpoint-3/adapter_model.safetensors").exists());

    let out = augur().args(["grpo"]).output().unwrap();
    assert!(!out.status.success());
}
