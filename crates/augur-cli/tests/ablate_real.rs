//! `augur ablate` with real GRPO runs, on the tiny random Llama fixture: outputs per run and per
//! step, reruns skip finished runs, an interrupted run resumes from its checkpoint, and bad
//! input fails before any run starts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SAMPLERS: [&str; 3] = ["uniform", "mopps", "ds"];
const SEEDS: usize = 2;
const STEPS: usize = 2;

/// A GRPO config on the fixture: 6 one-token prompts, 3 per step, a checkpoint every step.
fn write_config(root: &Path) -> PathBuf {
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
        "[model]\npath = {fixture:?}\ntokenizer = {tokenizer:?}\n[lora]\nrank = 4\nalpha = 8.0\n\
         [data]\ntrain = {train:?}\nraw = true\n[rollout]\nprompts_per_step = 3\ngroup_size = 4\nmax_new_tokens = 4\n\
         [algorithm]\nsteps = {STEPS}\nmicro_batch_size = 12\n\
         [optimizer.schedule]\nlr = 1e-2\nkind = \"constant\"\n[checkpoint]\nevery = 1\n[logging]\nprint = false\n",
        train = root.join("train.jsonl"),
    );
    let path = root.join("grpo.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn ablate(config: &Path, samplers: &str, seeds: &str, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_augur"))
        .args(["ablate", "--config"])
        .arg(config)
        .args(["--samplers", samplers, "--seeds", seeds, "--out"])
        .arg(out)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).unwrap().lines().count()
}

fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

#[test]
fn ablation_runs_reports_skips_and_resumes() {
    let root = tempfile::tempdir().unwrap();
    let config = write_config(root.path());
    let out = root.path().join("ablate");
    let samplers = SAMPLERS.join(",");
    let seeds = SEEDS.to_string();

    let first = ablate(&config, &samplers, &seeds, &out);
    let (stdout, stderr) = (text(&first.stdout), text(&first.stderr));
    assert!(first.status.success(), "{stderr}");
    for s in SAMPLERS {
        assert!(
            stdout.contains(&format!("| {s} |")),
            "{s} missing:\n{stdout}"
        );
    }
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("train, last ¼ mean"), "{summary}");
    // Every sampler's picks, classed by the prompt's last outcome: the four shares cover them.
    let picks = summary
        .split("### Picks by the prompt's last outcome")
        .nth(1)
        .unwrap_or_else(|| panic!("no picks table:\n{summary}"));
    for s in SAMPLERS {
        let row = picks
            .lines()
            .find(|l| l.starts_with(&format!("| {s} |")))
            .unwrap_or_else(|| panic!("{s} has no picks row:\n{picks}"));
        let shares: f64 = row
            .split('|')
            .skip(2)
            .filter_map(|c| c.split_whitespace().next()?.parse::<f64>().ok())
            .sum();
        assert!((shares - 1.0).abs() < 0.02, "{row}");
    }
    assert_eq!(lines(&out.join("runs.csv")), 1 + SAMPLERS.len() * SEEDS);
    assert_eq!(
        lines(&out.join("steps.csv")),
        1 + SAMPLERS.len() * SEEDS * STEPS
    );
    for f in [
        "accuracy_vs_rollouts.png",
        "accuracy_vs_rollouts.svg",
        "effective_ratio.png",
        "effective_ratio.svg",
    ] {
        let len = std::fs::metadata(out.join(f)).map_or(0, |m| m.len());
        assert!(len > 0, "{f} missing or empty");
    }

    // A rerun starts no run.
    let metrics = |run: &str| out.join("runs").join(run).join("metrics.jsonl");
    let before = mtime(&metrics("uniform-seed0"));
    let again = ablate(&config, &samplers, &seeds, &out);
    let stderr = text(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("skip").count(),
        SAMPLERS.len() * SEEDS,
        "{stderr}"
    );
    assert_eq!(mtime(&metrics("uniform-seed0")), before);

    // A run that crashed after its first checkpoint continues from it.
    let run = out.join("runs/mopps-seed1");
    let log = std::fs::read_to_string(metrics("mopps-seed1")).unwrap();
    std::fs::write(metrics("mopps-seed1"), log.lines().next().unwrap()).unwrap();
    std::fs::remove_dir_all(run.join(format!("checkpoint-{STEPS}"))).unwrap();
    let resumed = ablate(&config, &samplers, &seeds, &out);
    let stderr = text(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    assert!(stderr.contains("mopps seed 1: resuming from"), "{stderr}");
    assert!(stderr.contains("checkpoint-1"), "{stderr}");
    assert_eq!(lines(&metrics("mopps-seed1")), STEPS);

    // Another config for the same folder is refused, naming the run and what differs.
    let other = root.path().join("other.toml");
    let changed = std::fs::read_to_string(&config)
        .unwrap()
        .replace("group_size = 4", "group_size = 2");
    std::fs::write(&other, changed).unwrap();
    let refused = ablate(&other, &samplers, &seeds, &out);
    let stderr = text(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("uniform-seed0") && stderr.contains("rollout"),
        "{stderr}"
    );
}

#[test]
fn bad_input_fails_before_any_run() {
    let root = tempfile::tempdir().unwrap();
    let config = write_config(root.path());
    let out = root.path().join("ablate");
    let cases = [
        (config.clone(), "uniform,bogus", "1", "\"bogus\""),
        (config.clone(), "uniform", "0", "--seeds"),
        (
            root.path().join("missing.toml"),
            "uniform",
            "1",
            "missing.toml",
        ),
    ];
    for (cfg, samplers, seeds, needle) in cases {
        let o = ablate(&cfg, samplers, seeds, &out);
        let stderr = text(&o.stderr);
        assert!(!o.status.success(), "{samplers} {seeds}");
        assert!(stderr.contains(needle), "{needle}: {stderr}");
        assert!(!out.exists(), "a run started for {samplers} {seeds}");
    }
}

#[test]
fn a_failing_run_names_its_sampler_seed_and_folder() {
    let root = tempfile::tempdir().unwrap();
    let config = write_config(root.path());
    let broken = std::fs::read_to_string(&config)
        .unwrap()
        .replace("parity/llama", "parity/no-such-model");
    std::fs::write(&config, broken).unwrap();
    let o = ablate(&config, "mopps", "1", &root.path().join("ablate"));
    let stderr = text(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("run mopps seed 0 failed") && stderr.contains("mopps-seed0"),
        "{stderr}"
    );
}

/// `[sampler] holdout_fraction` / `holdout_steps` as the README documents them: the held-out
/// prompts are no candidates in the first steps of any run, the report compares their first
/// appearances with the others', and an out-of-range value stops the ablation before any run.
#[test]
fn held_out_prompts_wait_and_the_report_shows_their_first_appearances() {
    let root = tempfile::tempdir().unwrap();
    let config = write_config(root.path());
    // 12 prompts; a seeded 40% held out of the first 2 of 4 steps; every open prompt a candidate.
    let data: String = (0..12)
        .map(|i| format!("{{\"question\": \"{}\", \"answer\": \"{}\"}}\n", i, i % 3))
        .collect();
    std::fs::write(root.path().join("train.jsonl"), data).unwrap();
    let text_cfg = std::fs::read_to_string(&config)
        .unwrap()
        .replace("steps = 2\n", "steps = 4\n")
        + "[sampler]\ncandidate_ratio = 0\nholdout_fraction = 0.4\nholdout_steps = 2\n";
    std::fs::write(&config, text_cfg).unwrap();
    let out = root.path().join("ablate");
    let o = ablate(&config, "uniform,mopps", "1", &out);
    assert!(o.status.success(), "{}", text(&o.stderr));

    let cfg = augur_train::grpo::GrpoConfig::load(&config, &[]).unwrap();
    let holdout = augur_train::grpo::selection::Holdout::of(&cfg).unwrap();
    assert_eq!((holdout.fraction, holdout.steps), (0.4, 2));
    let mut late_held = 0;
    for sampler in ["uniform", "mopps"] {
        let metrics = out.join(format!("runs/{sampler}-seed0/metrics.jsonl"));
        for line in std::fs::read_to_string(&metrics).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let Some(ids) = v["prompt_ids"].as_array() else {
                continue;
            };
            let step = v["step"].as_u64().unwrap();
            let held = ids
                .iter()
                .filter(|id| holdout.contains(id.as_u64().unwrap() as u32))
                .count();
            if step <= 2 {
                assert_eq!(held, 0, "{sampler} step {step} trained a held-out prompt");
            } else {
                late_held += held;
            }
        }
    }
    assert!(late_held > 0, "no held-out prompt came up after step 2");
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        summary.contains("### Held-out prompts, first seen")
            && summary.contains("first 2 steps")
            && summary.contains("| mopps | ")
            && summary.contains("| uniform | "),
        "{summary}"
    );

    // Out of range: named, and nothing runs.
    let bad_out = root.path().join("bad");
    let o = Command::new(env!("CARGO_BIN_EXE_augur"))
        .args(["ablate", "--config"])
        .arg(&config)
        .args(["--samplers", "mopps", "--seeds", "1", "--out"])
        .arg(&bad_out)
        .args(["--set", "sampler.holdout_fraction=1.5"])
        .output()
        .unwrap();
    let stderr = text(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("sampler.holdout_fraction"), "{stderr}");
    assert!(!bad_out.exists());
}
