//! The run folder contract every trainer follows, so a run's data is never lost or mixed with
//! another run's. A run folder holds the resolved `config.toml`, the metrics log (one JSON line per
//! step, with a `step` field) and `checkpoint-<step>/` folders. Its promises:
//!
//! - A fresh run never starts in a folder that holds another run, unless told to replace it
//!   (`overwrite`), and then the old run's files go first.
//! - A checkpoint is complete or invisible: it is written into a hidden
//!   `.partial-checkpoint-<step>/` folder and renamed into place when every file is in it. A
//!   partial folder left by a killed run is removed when the next run opens the folder.
//! - A resumed run keeps the metrics lines of the steps its checkpoint covers and drops only later
//!   ones (a crashed run logged them after its last checkpoint). Checkpoints of later steps belong
//!   to the history being replaced: resuming refuses to drop them unless told to (`overwrite`).
//! - A run resumed into a folder other than its checkpoint's refuses a folder that holds another
//!   run, like a fresh one.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The resolved config, at the top of the run folder.
pub const RUN_CONFIG: &str = "config.toml";
const CHECKPOINT_PREFIX: &str = "checkpoint-";
const PARTIAL_PREFIX: &str = ".partial-checkpoint-";
/// A checkpoint being deleted is first renamed to this prefix, so it vanishes at once.
const REMOVED_PREFIX: &str = ".removed-";

/// How a run starts: fresh or from a checkpoint, and whether it may replace what is in its way.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// Continue from this checkpoint folder (`<run>/checkpoint-<step>`).
    pub resume: Option<PathBuf>,
    /// Replace another run in the run folder (fresh), or checkpoints after the resumed step
    /// (resume), instead of refusing.
    pub overwrite: bool,
}

impl Launch {
    /// A fresh run that refuses an occupied folder.
    pub fn fresh() -> Self {
        Self::default()
    }

    /// Continue from `checkpoint`, refusing to drop later checkpoints.
    pub fn resume(checkpoint: impl Into<PathBuf>) -> Self {
        Self {
            resume: Some(checkpoint.into()),
            overwrite: false,
        }
    }
}

/// An opened run folder (see the module docs for what opening it guarantees).
#[derive(Debug)]
pub struct RunDir {
    root: PathBuf,
    metrics: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.into(),
        source,
    }
}

/// The step of a `checkpoint-<step>` folder name.
fn checkpoint_step(name: &str) -> Option<u64> {
    name.strip_prefix(CHECKPOINT_PREFIX)?.parse().ok()
}

impl RunDir {
    /// Checks, changing nothing, that a run logging metrics to `metrics` may open `root`,
    /// resuming at `resumed` = (step, checkpoint folder) or fresh: errors when the folder holds
    /// another run, or checkpoints after the resumed step, unless `overwrite`. Returns what
    /// [`RunDir::open`] would remove. Cheap, so a trainer calls it before loading a model.
    pub fn check(
        root: &Path,
        metrics: &Path,
        resumed: Option<(u64, &Path)>,
        overwrite: bool,
    ) -> Result<Vec<PathBuf>> {
        if !root.exists() {
            return Ok(Vec::new());
        }
        let dir = Self {
            root: root.to_path_buf(),
            metrics: metrics.to_path_buf(),
        };
        let own_folder = resumed.is_some_and(|(_, ckpt)| dir.holds(ckpt));
        let in_the_way: Vec<PathBuf> = match resumed {
            Some((step, _)) if own_folder => dir
                .checkpoints()?
                .into_iter()
                .filter(|(s, _)| *s > step)
                .map(|(_, p)| p)
                .collect(),
            _ => dir.run_files()?,
        };
        if in_the_way.is_empty() || overwrite {
            return Ok(in_the_way);
        }
        let names = in_the_way
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Err(Error::RunFolder(match resumed {
            Some((step, _)) if own_folder => format!(
                "{}: resuming at step {step} would replace the later checkpoints {names}; pass \
                 --overwrite to replace them, or resume into another folder \
                 (--set checkpoint.dir=...)",
                root.display()
            ),
            _ => format!(
                "{} holds another run ({names}); pass --overwrite to replace it, or choose \
                 another checkpoint.dir (a fresh run never writes into a folder that already \
                 holds a run)",
                root.display()
            ),
        }))
    }

    /// Opens `root` (created if missing) as [`RunDir::check`] allows: removes partial
    /// checkpoints and, with `overwrite`, what is in the way, and leaves the metrics log holding
    /// exactly the lines the run continues from.
    pub fn open(
        root: &Path,
        metrics: &Path,
        resumed: Option<(u64, &Path)>,
        overwrite: bool,
    ) -> Result<Self> {
        let in_the_way = Self::check(root, metrics, resumed, overwrite)?;
        std::fs::create_dir_all(root).map_err(io(root))?;
        let dir = Self {
            root: root.to_path_buf(),
            metrics: metrics.to_path_buf(),
        };
        dir.remove_partials()?;
        // Latest checkpoint first, config last: a kill half-way leaves a consistent (shorter)
        // run, never checkpoints without their metrics.
        for p in in_the_way.iter().rev() {
            remove(p)?;
        }
        let kept_to = match resumed {
            Some((step, ckpt)) if dir.holds(ckpt) => Some(step),
            _ => None,
        };
        dir.keep_metrics_up_to(kept_to)?;
        Ok(dir)
    }

    /// Whether `checkpoint` is one of this folder's own.
    fn holds(&self, checkpoint: &Path) -> bool {
        let parent = match checkpoint.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        same_folder(parent, &self.root)
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where checkpoint `step` lives once complete.
    pub fn checkpoint_path(&self, step: u64) -> PathBuf {
        self.root.join(format!("{CHECKPOINT_PREFIX}{step}"))
    }

    /// Writes the resolved config at the top of the folder (atomically).
    pub fn write_config(&self, toml: &str) -> Result<()> {
        Ok(augur_model::atomic::write_atomic(
            &self.root.join(RUN_CONFIG),
            toml.as_bytes(),
        )?)
    }

    /// Opens the metrics log for appending (it holds the lines [`RunDir::open`] kept).
    pub fn append_metrics(&self) -> Result<MetricsLog> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.metrics)
            .map_err(io(&self.metrics))?;
        Ok(MetricsLog {
            file,
            path: self.metrics.clone(),
        })
    }

    /// Saves checkpoint `step`: `write` fills a hidden partial folder, which is then renamed to
    /// `checkpoint-<step>`, so a reader sees the whole checkpoint or none of it.
    pub fn save_checkpoint(
        &self,
        step: u64,
        write: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        let partial = self.root.join(format!("{PARTIAL_PREFIX}{step}"));
        let done = self.checkpoint_path(step);
        if done.exists() {
            return Err(Error::RunFolder(format!(
                "{} already exists; a checkpoint is never overwritten in place",
                done.display()
            )));
        }
        if partial.exists() {
            remove(&partial)?;
        }
        std::fs::create_dir(&partial).map_err(io(&partial))?;
        write(&partial)?;
        std::fs::rename(&partial, &done).map_err(io(&done))?;
        Ok(done)
    }

    /// Complete checkpoints, by step.
    pub fn checkpoints(&self) -> Result<Vec<(u64, PathBuf)>> {
        let mut out: Vec<(u64, PathBuf)> = self
            .entries()?
            .into_iter()
            .filter_map(|p| {
                let step = checkpoint_step(p.file_name()?.to_str()?)?;
                p.is_dir().then_some((step, p))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// The complete checkpoint of the highest step, if any.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, PathBuf)>> {
        Ok(self.checkpoints()?.pop())
    }

    fn entries(&self) -> Result<Vec<PathBuf>> {
        std::fs::read_dir(&self.root)
            .map_err(io(&self.root))?
            .map(|e| e.map(|e| e.path()).map_err(io(&self.root)))
            .collect()
    }

    /// What makes the folder hold a run: its config, a non-empty metrics log, checkpoints (in
    /// this order).
    fn run_files(&self) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let config = self.root.join(RUN_CONFIG);
        if config.exists() {
            out.push(config);
        }
        if std::fs::metadata(&self.metrics).is_ok_and(|m| m.len() > 0) {
            out.push(self.metrics.clone());
        }
        out.extend(self.checkpoints()?.into_iter().map(|(_, p)| p));
        Ok(out)
    }

    fn remove_partials(&self) -> Result<()> {
        for p in self.entries()? {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with(PARTIAL_PREFIX) || name.starts_with(REMOVED_PREFIX) {
                remove(&p)?;
            }
        }
        Ok(())
    }

    /// Rewrites the metrics log with the lines of steps `<= last` (none when `last` is None).
    /// A line without a step (torn by a kill mid-write) is dropped.
    fn keep_metrics_up_to(&self, last: Option<u64>) -> Result<()> {
        let kept: String = match last {
            None => String::new(),
            Some(last) => match std::fs::read_to_string(&self.metrics) {
                Ok(text) => text
                    .lines()
                    .filter(|l| line_step(l).is_some_and(|s| s <= last))
                    .map(|l| format!("{l}\n"))
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(io(&self.metrics)(e)),
            },
        };
        if let Some(parent) = self.metrics.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        Ok(augur_model::atomic::write_atomic(
            &self.metrics,
            kept.as_bytes(),
        )?)
    }
}

/// The `step` a metrics line was logged at; `None` for a line that is not a JSON object with an
/// integer `step` (a line torn by a kill).
pub fn line_step(line: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()?
        .get("step")?
        .as_u64()
}

/// A run's `metrics.jsonl`, open for appending: one JSON line per typed record
/// ([`crate::metrics`]).
pub struct MetricsLog {
    file: std::fs::File,
    path: PathBuf,
}

impl MetricsLog {
    /// Appends `line` as one JSON line.
    pub fn write<T: serde::Serialize>(&mut self, line: &T) -> Result<()> {
        use std::io::Write;
        let mut json = serde_json::to_string(line)
            .map_err(|e| Error::Metrics(format!("{}: {e}", self.path.display())))?;
        json.push('\n');
        self.file.write_all(json.as_bytes()).map_err(io(&self.path))
    }
}

/// The checks a trainer makes before its (slow) model load: the checkpoint `launch` resumes
/// from is complete and at step `step_of(checkpoint)` (each trainer reads its own state file),
/// and [`RunDir::check`] lets the run open `root`.
pub fn check_launch(
    root: &Path,
    metrics: &Path,
    launch: &Launch,
    step_of: impl FnOnce(&Path) -> Result<u64>,
) -> Result<()> {
    let resume = launch.resume.as_deref();
    let resumed_step = resume.map(step_of).transpose()?;
    RunDir::check(root, metrics, resumed_step.zip(resume), launch.overwrite)?;
    Ok(())
}

/// A run in progress: its folder opened for `launch`, the resolved config written at its top,
/// the metrics log open, and each line also handed to the front end. The part of the loop that
/// GRPO and SFT share; the step between two [`ActiveRun::emit`]s is each trainer's own.
pub struct ActiveRun<'a, M> {
    folder: RunDir,
    metrics: MetricsLog,
    on_line: &'a mut dyn FnMut(&M),
    resumed_from: Option<PathBuf>,
    last_checkpoint: Option<PathBuf>,
}

impl<'a, M: serde::Serialize> ActiveRun<'a, M> {
    /// Opens `root` (see [`RunDir::open`]) for a run starting at `step` (0 fresh, the
    /// checkpoint's step on resume), writes `config_toml` into it and opens the metrics log.
    pub fn open(
        root: &Path,
        metrics: &Path,
        launch: &Launch,
        step: u64,
        config_toml: &str,
        on_line: &'a mut dyn FnMut(&M),
    ) -> Result<Self> {
        let resume = launch.resume.as_deref();
        let folder = RunDir::open(
            root,
            metrics,
            resume.map(|dir| (step, dir)),
            launch.overwrite,
        )?;
        folder.write_config(config_toml)?;
        let metrics = folder.append_metrics()?;
        Ok(Self {
            folder,
            metrics,
            on_line,
            resumed_from: resume.map(Path::to_path_buf),
            last_checkpoint: None,
        })
    }

    /// The run folder.
    pub fn root(&self) -> &Path {
        self.folder.root()
    }

    /// Appends `line` to the metrics log, then hands it to the front end.
    pub fn emit(&mut self, line: M) -> Result<()> {
        self.metrics.write(&line)?;
        (self.on_line)(&line);
        Ok(())
    }

    /// Saves checkpoint `step` (complete or invisible, see [`RunDir::save_checkpoint`]).
    pub fn save_checkpoint(
        &mut self,
        step: u64,
        write: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        let dir = self.folder.save_checkpoint(step, write)?;
        self.last_checkpoint = Some(dir.clone());
        Ok(dir)
    }

    /// The checkpoint the run ends at: the last one this call saved, else the one it resumed
    /// from (empty when it saved none and started fresh).
    pub fn final_checkpoint(&self) -> PathBuf {
        self.last_checkpoint
            .clone()
            .or_else(|| self.resumed_from.clone())
            .unwrap_or_default()
    }
}

/// Whether `a` and `b` name the same existing folder.
fn same_folder(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Removes a file, or a folder by renaming it to a hidden `.removed-` name first, so a kill
/// half-way never leaves a folder (a checkpoint) with only some of its files.
fn remove(p: &Path) -> Result<()> {
    if !p.is_dir() {
        return std::fs::remove_file(p).map_err(io(p));
    }
    let name = p.file_name().unwrap_or_default().to_string_lossy();
    let hidden = match name.starts_with('.') {
        true => p.to_path_buf(),
        false => p.with_file_name(format!("{REMOVED_PREFIX}{name}")),
    };
    if hidden != p {
        if hidden.exists() {
            std::fs::remove_dir_all(&hidden).map_err(io(&hidden))?;
        }
        std::fs::rename(p, &hidden).map_err(io(p))?;
    }
    std::fs::remove_dir_all(&hidden).map_err(io(&hidden))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics_steps(path: &Path) -> Vec<u64> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| line_step(l).unwrap())
            .collect()
    }

    /// A folder with a finished 3-step run (checkpoints 1..3) and a torn last metrics line.
    fn finished_run(root: &Path) -> PathBuf {
        let metrics = root.join("metrics.jsonl");
        let dir = RunDir::open(root, &metrics, None, false).unwrap();
        dir.write_config("x = 1\n").unwrap();
        let mut log = dir.append_metrics().unwrap();
        for step in 1..=3 {
            log.write(&serde_json::json!({ "step": step })).unwrap();
            dir.save_checkpoint(step, |p| {
                std::fs::write(p.join("state.json"), step.to_string()).map_err(io(p))
            })
            .unwrap();
        }
        std::fs::write(
            &metrics,
            std::fs::read_to_string(&metrics).unwrap() + "{\"st",
        )
        .unwrap();
        metrics
    }

    #[test]
    fn fresh_run_refuses_a_folder_holding_a_run_unless_overwriting() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("run");
        let metrics = finished_run(&root);
        let err = RunDir::open(&root, &metrics, None, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("holds another run") && err.contains("checkpoint-2"),
            "{err}"
        );
        assert_eq!(metrics_steps_lossy(&metrics), [1, 2, 3]);
        let dir = RunDir::open(&root, &metrics, None, true).unwrap();
        assert!(dir.checkpoints().unwrap().is_empty());
        assert!(!root.join(RUN_CONFIG).exists());
        assert_eq!(std::fs::read_to_string(&metrics).unwrap(), "");
    }

    fn metrics_steps_lossy(path: &Path) -> Vec<u64> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["step"].as_u64())
            .collect()
    }

    #[test]
    fn resume_keeps_metrics_to_its_step_and_guards_later_checkpoints() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("run");
        let metrics = finished_run(&root);
        // Resuming the latest checkpoint keeps every step and drops the torn line.
        let ck3 = root.join("checkpoint-3");
        RunDir::open(&root, &metrics, Some((3, &ck3)), false).unwrap();
        assert_eq!(metrics_steps(&metrics), [1, 2, 3]);
        // An earlier one would replace checkpoint-3: refused, then allowed with overwrite.
        let ck2 = root.join("checkpoint-2");
        let err = RunDir::open(&root, &metrics, Some((2, &ck2)), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("checkpoint-3") && err.contains("--overwrite"),
            "{err}"
        );
        assert_eq!(metrics_steps(&metrics), [1, 2, 3]);
        let dir = RunDir::open(&root, &metrics, Some((2, &ck2)), true).unwrap();
        assert_eq!(metrics_steps(&metrics), [1, 2]);
        let steps: Vec<u64> = dir.checkpoints().unwrap().iter().map(|c| c.0).collect();
        assert_eq!(steps, [1, 2]);
    }

    #[test]
    fn resuming_into_another_folder_leaves_the_original_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        let metrics_a = finished_run(&a);
        let before = std::fs::read(&metrics_a).unwrap();
        let dir = RunDir::open(
            &b,
            &b.join("metrics.jsonl"),
            Some((2, &a.join("checkpoint-2"))),
            false,
        )
        .unwrap();
        assert!(dir.checkpoints().unwrap().is_empty());
        assert_eq!(std::fs::read(&metrics_a).unwrap(), before);
        // A target folder holding another run is refused like a fresh run's.
        let c = tmp.path().join("c");
        let metrics_c = finished_run(&c);
        let err = RunDir::open(&c, &metrics_c, Some((2, &b.join("checkpoint-2"))), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds another run"), "{err}");
    }

    #[test]
    fn partial_checkpoints_are_invisible_and_cleaned_up() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("run");
        let metrics = root.join("metrics.jsonl");
        let dir = RunDir::open(&root, &metrics, None, false).unwrap();
        let failed = dir.save_checkpoint(1, |p| {
            std::fs::write(p.join("adapter.safetensors"), b"half").map_err(io(p))?;
            Err(Error::Invalid("killed".into()))
        });
        assert!(failed.is_err());
        assert!(dir.checkpoints().unwrap().is_empty());
        assert!(root.join(".partial-checkpoint-1").exists());
        let dir = RunDir::open(&root, &metrics, None, false).unwrap();
        assert!(!root.join(".partial-checkpoint-1").exists());
        let ck = dir
            .save_checkpoint(1, |p| std::fs::write(p.join("a"), b"1").map_err(io(p)))
            .unwrap();
        assert_eq!(ck, root.join("checkpoint-1"));
        assert_eq!(dir.latest_checkpoint().unwrap().unwrap().0, 1);
        assert!(dir.save_checkpoint(1, |_| Ok(())).is_err());
    }
}
