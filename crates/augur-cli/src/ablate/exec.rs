//! Running one planned run as an `augur grpo` child process, resumably: a finished run folder
//! is skipped, an interrupted one continues from its latest checkpoint, so rerunning a crashed
//! ablation picks up where it stopped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context};
use augur_train::grpo::GrpoConfig;

use super::metrics::{completed_steps, read_steps};
use super::plan::RunPlan;

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
    let rows = read_steps(&run.config.metrics_path())?;
    if completed_steps(&rows) >= run.steps() {
        return Ok(RunState::Complete);
    }
    Ok(latest_checkpoint(&run.dir, run.steps())?.map_or(RunState::Fresh, RunState::Resume))
}

/// The `checkpoint-<n>` folder with the largest `n <= steps` that was fully written (the
/// trainer writes its `config.toml` last).
fn latest_checkpoint(dir: &Path, steps: u64) -> anyhow::Result<Option<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        let step = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("checkpoint-"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(step) = step {
            let usable = step <= steps && path.join("config.toml").is_file();
            if usable && best.as_ref().is_none_or(|(b, _)| step > *b) {
                best = Some((step, path));
            }
        }
    }
    Ok(best.map(|(_, p)| p))
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
    let stored = GrpoConfig::from_toml_str(&text, &[])
        .with_context(|| format!("{}: not a GRPO config", path.display()))?;
    let table = |c: &GrpoConfig| -> anyhow::Result<toml::Table> {
        let mut c = c.clone();
        c.checkpoint = Default::default();
        c.logging = Default::default();
        c.algorithm.steps = 0;
        Ok(toml::from_str(&c.to_toml()?)?)
    };
    let (old, new) = (table(&stored)?, table(&run.config)?);
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

/// Runs `augur grpo` for `run` (resuming per `state`); its output streams to our stderr, so
/// stdout keeps only the ablation's table.
pub fn execute(run: &RunPlan, config_path: &Path, state: &RunState) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot locate the augur executable")?;
    let mut cmd = Command::new(&exe);
    cmd.arg("grpo").arg("--config").arg(config_path);
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
        .with_context(|| format!("cannot start {} grpo", exe.display()))?;
    if !status.success() {
        bail!(
            "run {} failed ({status}); its run folder is {} (rerun the ablation to resume it)",
            run.label(),
            run.dir.display()
        );
    }
    let done = completed_steps(&read_steps(&run.config.metrics_path())?);
    ensure!(
        done >= run.steps(),
        "run {} exited but {} logs {done} of {} steps",
        run.label(),
        run.config.metrics_path().display(),
        run.steps()
    );
    Ok(())
}
