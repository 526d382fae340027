//! Running one planned run as an `augur grpo` / `augur sft` child process, resumably: a finished run folder
//! is skipped, an interrupted one continues from its latest checkpoint, so rerunning a crashed
//! ablation picks up where it stopped. Then reading what it logged.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context};

use crate::plan::RunPlan;
use crate::run::{completed_steps, read_steps, Run};

/// What a run folder holds.
#[derive(Debug, PartialEq)]
pub enum RunState {
    /// Metrics for every configured step: nothing to do.
    Complete,
    /// Interrupted after this checkpoint.
    Resume(PathBuf),
    /// Nothing usable: start from scratch.
    Fresh,
}

/// Inspects `run`'s folder.
pub fn run_state(run: &RunPlan) -> anyhow::Result<RunState> {
    check_same_config(run)?;
    let rows = read_steps(run.config.mode(), &run.config.metrics_path())?;
    if completed_steps(&rows) >= run.steps() {
        return Ok(RunState::Complete);
    }
    Ok(latest_checkpoint(&run.dir, run.steps())?.map_or(RunState::Fresh, RunState::Resume))
}

/// The `checkpoint-<n>` folders of `dir` with `n <= steps` that were fully written (the
/// trainer writes a checkpoint's `config.toml` last), as (n, folder) in step order; none when
/// `dir` does not exist.
pub fn checkpoints(dir: &Path, steps: u64) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        let step = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("checkpoint-"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(step) = step.filter(|&s| s <= steps && path.join("config.toml").is_file()) {
            out.push((step, path));
        }
    }
    out.sort();
    Ok(out)
}

/// The latest of [`checkpoints`].
fn latest_checkpoint(dir: &Path, steps: u64) -> anyhow::Result<Option<PathBuf>> {
    Ok(checkpoints(dir, steps)?.pop().map(|(_, p)| p))
}

/// Refuses to reuse a run folder made with another config (other than where it writes, how
/// much it logs and how many steps it runs: more steps continue the run), so an ablation never
/// mixes runs of different settings.
fn check_same_config(run: &RunPlan) -> anyhow::Result<()> {
    let path = run.dir.join("config.toml");
    if !path.is_file() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let stored = run
        .config
        .parse_like(&text)
        .with_context(|| format!("{}: not a {} config", path.display(), run.config.command()))?;
    let (old, new) = (stored.settings()?, run.config.settings()?);
    let differ: BTreeSet<&str> = old
        .keys()
        .chain(new.keys())
        .filter(|k| old.get(*k) != new.get(*k))
        .map(String::as_str)
        .collect();
    ensure!(
        differ.is_empty(),
        "{} ({}) was made with a different config (differs in: {}); use another --out or delete it",
        run.dir.display(),
        run.label(),
        Vec::from_iter(differ).join(", ")
    );
    Ok(())
}

/// Runs `<augur> grpo` (or `sft`) for `run` (resuming per `state`), `augur` being the binary at `augur`;
/// its output streams to our stderr, so stdout keeps only the ablation's table.
pub fn execute(
    augur: &Path,
    run: &RunPlan,
    config_path: &Path,
    state: &RunState,
) -> anyhow::Result<()> {
    let exe = augur;
    let mut cmd = Command::new(exe);
    cmd.arg(run.config.command())
        .arg("--config")
        .arg(config_path);
    for o in &run.overrides {
        cmd.arg("--set").arg(o);
    }
    match state {
        RunState::Resume(ckpt) => {
            cmd.arg("--resume").arg(ckpt);
        }
        // Interrupted before its first checkpoint (same config, checked above): start over.
        RunState::Fresh => {
            cmd.arg("--overwrite");
        }
        RunState::Complete => {}
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit());
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {} {}", exe.display(), run.config.command()))?;
    if !status.success() {
        bail!(
            "run {} failed ({status}); its run folder is {} (rerun the ablation to resume it)",
            run.label(),
            run.dir.display()
        );
    }
    let done = completed_steps(&read_steps(run.config.mode(), &run.config.metrics_path())?);
    ensure!(
        done >= run.steps(),
        "run {} exited but {} logs {done} of {} steps",
        run.label(),
        run.config.metrics_path().display(),
        run.steps()
    );
    Ok(())
}

/// Reads `run`'s metrics, up to its configured steps (a folder continued to more steps earlier
/// may hold later ones); all of them must be there.
pub fn read_run(run: &RunPlan) -> anyhow::Result<Run> {
    let path = run.config.metrics_path();
    let mode = run.config.mode();
    let mut rows = read_steps(mode, &path)?;
    rows.retain(|r| r.step <= run.steps());
    let done = completed_steps(&rows);
    ensure!(
        done >= run.steps(),
        "{} ({}): {done} of {} steps logged",
        path.display(),
        run.label(),
        run.steps()
    );
    Ok(Run {
        mode,
        method: run.sampler.clone(),
        seed: run.seed,
        dir: run.dir.display().to_string(),
        rows,
        group_size: run.config.group_size(),
        holdout: run.config.holdout(),
    })
}
