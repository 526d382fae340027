//! A run's `metrics.jsonl` as the ablation needs it: one row per step, and the per-run numbers
//! the report compares (final accuracy, rollouts to a target, effective ratio, Spearman ρ).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde_json::{Map, Value};

use super::plan::RunPlan;

/// One step of a run. Lines with the same `step` are merged, so an evaluation logged on its
/// own line lands on the step it belongs to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepRow {
    pub step: u64,
    /// Completions generated so far (`rollouts_used`).
    pub rollouts_used: Option<u64>,
    /// Fraction of this step's training completions that were correct.
    pub accuracy: Option<f64>,
    /// Fraction correct on the held-out set, on evaluation steps.
    pub eval_accuracy: Option<f64>,
    /// `sampler_effective_ratio`, else `1 - zero_variance_groups`.
    pub effective_ratio: Option<f64>,
    /// `sampler_spearman` (null before the predictor has data).
    pub spearman: Option<f64>,
    /// `time_step_s`.
    pub time_step_s: Option<f64>,
}

impl StepRow {
    fn from_json(step: u64, m: &Map<String, Value>) -> Self {
        let f = |k: &str| m.get(k).and_then(Value::as_f64);
        Self {
            step,
            rollouts_used: m.get("rollouts_used").and_then(Value::as_u64),
            accuracy: f("accuracy"),
            eval_accuracy: f("eval_accuracy"),
            effective_ratio: f("sampler_effective_ratio")
                .or_else(|| f("zero_variance_groups").map(|z| 1.0 - z)),
            spearman: f("sampler_spearman"),
            time_step_s: f("time_step_s"),
        }
    }
}

/// The rows of `path` in step order; no file means no steps yet.
pub fn read_steps(path: &Path) -> anyhow::Result<Vec<StepRow>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut by_step: BTreeMap<u64, Map<String, Value>> = BTreeMap::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = || format!("{}:{}", path.display(), i + 1);
        let obj: Map<String, Value> =
            serde_json::from_str(line).with_context(|| format!("{}: not a JSON object", at()))?;
        let step = obj
            .get("step")
            .and_then(Value::as_u64)
            .with_context(|| format!("{}: no integer \"step\"", at()))?;
        by_step.entry(step).or_default().extend(obj);
    }
    Ok(by_step
        .iter()
        .map(|(&s, m)| StepRow::from_json(s, m))
        .collect())
}

/// Training steps 1..=n logged without a gap: how far the run got.
pub fn completed_steps(rows: &[StepRow]) -> u64 {
    let mut n = 0;
    for r in rows.iter().filter(|r| r.step > 0) {
        if r.step != n + 1 || r.accuracy.is_none() {
            break;
        }
        n = r.step;
    }
    n
}

/// Where a run's accuracy comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccuracySource {
    /// `eval_accuracy` on the held-out set.
    Eval,
    /// Training `accuracy`, averaged over a trailing quarter of the run.
    Train,
}

impl AccuracySource {
    /// How `runs.csv` names it.
    pub fn key(self) -> &'static str {
        match self {
            Self::Eval => "eval",
            Self::Train => "train_last_quarter",
        }
    }

    /// How the Markdown table names it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Eval => "held-out eval",
            Self::Train => "train, last ¼ mean",
        }
    }
}

/// One finished run of the ablation.
pub struct RunMetrics {
    pub sampler: String,
    pub seed: u64,
    /// Run folder (for `runs.csv`).
    pub dir: String,
    /// Steps 1..=configured (plus a step-0 evaluation, if logged).
    pub rows: Vec<StepRow>,
}

impl RunMetrics {
    /// Reads `run`'s metrics, up to its configured steps (a folder continued to more steps
    /// earlier may hold later ones).
    pub fn read(run: &RunPlan) -> anyhow::Result<Self> {
        let path = run.config.metrics_path();
        let mut rows = read_steps(&path)?;
        rows.retain(|r| r.step <= run.steps());
        let done = completed_steps(&rows);
        anyhow::ensure!(
            done >= run.steps(),
            "{} ({}): {done} of {} steps logged",
            path.display(),
            run.label(),
            run.steps()
        );
        Ok(Self {
            sampler: run.sampler.clone(),
            seed: run.seed,
            dir: run.dir.display().to_string(),
            rows,
        })
    }

    /// Training steps logged (a step-0 evaluation is not one).
    pub fn steps(&self) -> usize {
        self.rows.iter().filter(|r| r.step > 0).count()
    }

    /// The run's accuracy over training as (rollouts used, accuracy) points. With held-out
    /// evaluations: their values. Without: at each step the mean training accuracy over the
    /// last quarter of the run's length up to it, the same smoothing as the final value, so a
    /// run reaches its own final accuracy at its last step at the latest.
    pub fn accuracy_curve(&self) -> (AccuracySource, Vec<(f64, f64)>) {
        let mut rollouts = 0.0;
        let with_x: Vec<(f64, &StepRow)> = self
            .rows
            .iter()
            .map(|r| {
                rollouts = r.rollouts_used.map_or(rollouts, |x| x as f64);
                (rollouts, r)
            })
            .collect();
        if with_x.iter().any(|(_, r)| r.eval_accuracy.is_some()) {
            let pts = with_x
                .iter()
                .filter_map(|(x, r)| r.eval_accuracy.map(|a| (*x, a)))
                .collect();
            return (AccuracySource::Eval, pts);
        }
        let train: Vec<(f64, f64)> = with_x
            .iter()
            .filter_map(|(x, r)| r.accuracy.map(|a| (*x, a)))
            .collect();
        let window = train.len().div_ceil(4).max(1);
        (
            AccuracySource::Train,
            augur_sampler::plot::trailing_mean(&train, window),
        )
    }

    /// The last point of [`Self::accuracy_curve`].
    pub fn final_accuracy(&self) -> (AccuracySource, Option<f64>) {
        let (src, c) = self.accuracy_curve();
        (src, c.last().map(|p| p.1))
    }

    /// Rollouts used when the accuracy curve first reached `target`.
    pub fn rollouts_to(&self, target: f64) -> Option<f64> {
        let (_, c) = self.accuracy_curve();
        c.iter().find(|p| p.1 >= target - 1e-12).map(|p| p.0)
    }

    /// Rollouts used over the run.
    pub fn total_rollouts(&self) -> f64 {
        self.rows
            .iter()
            .filter_map(|r| r.rollouts_used)
            .max()
            .unwrap_or(0) as f64
    }

    /// Training time: the sum of `time_step_s` (so a resumed run counts each step once).
    pub fn wall_s(&self) -> f64 {
        self.rows.iter().filter_map(|r| r.time_step_s).sum()
    }

    /// Mean of a per-step value over the steps that have it.
    pub fn mean_of(&self, f: impl Fn(&StepRow) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.rows.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// (step, effective ratio) of every step that has one.
    pub fn effective_curve(&self) -> Vec<(f64, f64)> {
        self.rows
            .iter()
            .filter_map(|r| r.effective_ratio.map(|e| (r.step as f64, e)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &str) -> RunMetrics {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        std::fs::write(&p, lines).unwrap();
        RunMetrics {
            sampler: "x".into(),
            seed: 0,
            dir: String::new(),
            rows: read_steps(&p).unwrap(),
        }
    }

    const TRAIN: &str = r#"{"step":1,"accuracy":0.0,"zero_variance_groups":0.5,"rollouts_used":32,"time_step_s":1.5}
{"step":2,"accuracy":0.5,"zero_variance_groups":0.25,"rollouts_used":64,"time_step_s":1.0}
{"step":3,"accuracy":0.25,"zero_variance_groups":0.0,"rollouts_used":96,"time_step_s":1.0}
{"step":4,"accuracy":1.0,"zero_variance_groups":0.0,"rollouts_used":128,"time_step_s":1.0}
{"step":5,"accuracy":0.5,"zero_variance_groups":1.0,"rollouts_used":160,"time_step_s":1.0}
"#;

    #[test]
    fn without_eval_uses_a_trailing_quarter_of_training_accuracy() {
        let r = run(TRAIN);
        assert_eq!(completed_steps(&r.rows), 5);
        // 5 steps: window of 2.
        let (src, acc) = r.final_accuracy();
        assert_eq!(src, AccuracySource::Train);
        assert_eq!(acc, Some(0.75));
        assert_eq!(r.rollouts_to(0.6), Some(128.0));
        assert_eq!(r.rollouts_to(0.9), None);
        assert_eq!(r.total_rollouts(), 160.0);
        assert_eq!(r.wall_s(), 5.5);
        assert_eq!(r.rows[0].effective_ratio, Some(0.5));
        assert_eq!(r.mean_of(|s| s.spearman), None);
    }

    #[test]
    fn eval_accuracy_wins_and_separate_lines_merge() {
        let lines = format!(
            "{{\"step\":0,\"eval_accuracy\":0.1}}\n{TRAIN}{{\"step\":5,\"eval_accuracy\":0.4}}\n{}",
            r#"{"step":2,"eval_accuracy":0.3,"sampler_effective_ratio":0.9,"sampler_spearman":0.5}"#
        );
        let r = run(&lines);
        let (src, curve) = r.accuracy_curve();
        assert_eq!(src, AccuracySource::Eval);
        assert_eq!(curve, vec![(0.0, 0.1), (64.0, 0.3), (160.0, 0.4)]);
        assert_eq!(r.final_accuracy().1, Some(0.4));
        assert_eq!(r.rows[2].effective_ratio, Some(0.9));
        assert_eq!(r.mean_of(|s| s.spearman), Some(0.5));
        assert_eq!(completed_steps(&r.rows), 5);
    }

    #[test]
    fn gaps_and_bad_lines() {
        let r = run("{\"step\":1,\"accuracy\":0.5}\n{\"step\":3,\"accuracy\":0.5}\n");
        assert_eq!(completed_steps(&r.rows), 1);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        assert!(read_steps(&p).unwrap().is_empty());
        std::fs::write(&p, "{\"step\":1}\nnot json\n").unwrap();
        let err = format!("{:#}", read_steps(&p).unwrap_err());
        assert!(err.contains("metrics.jsonl:2"), "{err}");
    }
}
