//! `augur ablate` with an `augur sft` config, on the tiny random Llama fixture, the way the README
//! documents it: selection methods × seeds run side by side, the same report as the sampler
//! ablation (runs.csv, steps.csv, summary.md, plots of held-out loss and accuracy against trained
//! samples and training seconds), reruns skip finished runs and cached accuracies, an
//! interrupted run resumes from its checkpoint, and a sampler name is refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const METHODS: [&str; 4] = ["uniform", "uds", "maxloss", "rho"];
const SEEDS: usize = 2;
const STEPS: usize = 2;

/// An SFT config on the fixture: 8 worked examples, 4 candidates and 2 kept per step, held-out
/// loss at the start and after every step on 4 problems.
fn write_config(root: &Path) -> PathBuf {
    let rows = |n: usize, offset: usize| -> String {
        (0..n)
            .map(|i| {
                let q = i + offset;
                format!(
                    "{{\"question\": \"{q}+1\", \"answer\": \"{q} 1 #### {}\"}}\n",
                    q + 1
                )
            })
            .collect()
    };
    std::fs::write(root.join("train.jsonl"), rows(8, 0)).unwrap();
    std::fs::write(root.join("test.jsonl"), rows(4, 20)).unwrap();
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let toml = format!(
        "[model]\npath = {:?}\ntokenizer = {:?}\n[lora]\nrank = 4\nalpha = 8.0\n\
         [data]\ntrain = {:?}\nraw = true\n[train]\nsteps = {STEPS}\nmicro_batch_size = 2\n\
         [selection]\ncandidates = 4\nkeep = 2\n[optimizer.schedule]\nlr = 1e-2\nkind = \"constant\"\n\
         [eval]\nfile = {:?}\nevery = 1\n[logging]\nprint = false\n",
        fixtures.join("parity/llama"),
        fixtures.join("char-tokenizer"),
        root.join("train.jsonl"),
        root.join("test.jsonl"),
    );
    let path = root.join("sft.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn ablate(config: &Path, methods: &str, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_augur"))
        .args(["ablate", "--config"])
        .arg(config)
        .args(["--methods", methods, "--seeds", &SEEDS.to_string()])
        .args(["--eval-prompts", "3", "--eval-max-new-tokens", "4", "--out"])
        .arg(out)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

#[test]
fn selection_ablation_runs_reports_skips_and_resumes() {
    let root = tempfile::tempdir().unwrap();
    let config = write_config(root.path());
    let out = root.path().join("ablate");
    let methods = METHODS.join(",");

    let first = ablate(&config, &methods, &out);
    let (stdout, stderr) = (text(&first.stdout), text(&first.stderr));
    assert!(first.status.success(), "{stderr}");
    for m in METHODS {
        assert!(
            stdout.contains(&format!("| {m} |")),
            "{m} missing:\n{stdout}"
        );
    }
    let summary = read(&out.join("summary.md"));
    assert!(
        summary.contains("Ablation (sft)") && summary.contains("samples to target"),
        "{summary}"
    );

    // runs.csv: a row per run; steps.csv: the step-0 evaluation and every step of every run.
    let runs = read(&out.join("runs.csv"));
    assert_eq!(runs.lines().count(), 1 + METHODS.len() * SEEDS, "{runs}");
    assert!(
        runs.lines().skip(1).all(|l| l.starts_with("sft,")),
        "{runs}"
    );
    let steps = read(&out.join("steps.csv"));
    assert_eq!(
        steps.lines().count(),
        1 + METHODS.len() * SEEDS * (STEPS + 1),
        "{steps}"
    );
    let header: Vec<&str> = steps.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for line in steps.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        let step: usize = cells[col("step")].parse().unwrap();
        // Every step trains `keep` = 2 examples; loss and accuracy are measured at each one.
        assert_eq!(cells[col("samples")], (2 * step).to_string(), "{line}");
        let loss: f64 = cells[col("eval_loss")].parse().unwrap();
        assert!(loss.is_finite() && loss > 0.0, "{line}");
        let acc: f64 = cells[col("eval_accuracy")].parse().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{line}");
    }
    for f in [
        "accuracy_vs_samples.svg",
        "accuracy_vs_wall.svg",
        "eval_loss_vs_samples.svg",
        "eval_loss_vs_wall.png",
        "summary.json",
    ] {
        let len = std::fs::metadata(out.join(f)).map_or(0, |m| m.len());
        assert!(len > 0, "{f} missing or empty");
    }
    // The starting model once, then each run's checkpoints.
    let cached = out.join("accuracy/uds-seed1.jsonl");
    assert_eq!(read(&cached).lines().count(), STEPS);
    assert_eq!(read(&out.join("accuracy/start.jsonl")).lines().count(), 1);

    // A rerun starts no run and measures nothing again.
    let metrics = |run: &str| out.join("runs").join(run).join("metrics.jsonl");
    let (before, cached_before) = (mtime(&metrics("rho-seed0")), mtime(&cached));
    let again = ablate(&config, &methods, &out);
    let stderr = text(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("skip").count(),
        METHODS.len() * SEEDS,
        "{stderr}"
    );
    assert!(!stderr.contains("held-out accuracy of"), "{stderr}");
    assert_eq!(mtime(&metrics("rho-seed0")), before);
    assert_eq!(mtime(&cached), cached_before);

    // A run that crashed after its first checkpoint continues from it.
    let run = out.join("runs/maxloss-seed1");
    let log = read(&metrics("maxloss-seed1"));
    let kept: Vec<&str> = log.lines().take(2).collect();
    std::fs::write(metrics("maxloss-seed1"), kept.join("\n") + "\n").unwrap();
    std::fs::remove_dir_all(run.join(format!("checkpoint-{STEPS}"))).unwrap();
    let resumed = ablate(&config, &methods, &out);
    let stderr = text(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    assert!(stderr.contains("maxloss seed 1: resuming from"), "{stderr}");
    assert!(stderr.contains("checkpoint-1"), "{stderr}");
    assert_eq!(read(&metrics("maxloss-seed1")).lines().count(), STEPS + 1);

    // A sampler is not a selection method.
    let bad = ablate(&config, "uniform,mopps", &root.path().join("bad"));
    let stderr = text(&bad.stderr);
    assert!(!bad.status.success());
    assert!(stderr.contains("unknown sft method \"mopps\""), "{stderr}");
    assert!(!root.path().join("bad").exists());
}
