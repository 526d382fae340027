//! A run's `metrics.jsonl` as the ablation needs it: one row per step, and the per-run numbers
//! the report compares (final accuracy, rollouts to a target, effective ratio, Spearman ρ).

use std::path::Path;

use augur_train::metrics::{read_metrics, StepMetrics};

use super::calibration::PromptRecord;
use super::plan::RunPlan;

/// One step of a run, as the report compares runs (read through [`StepMetrics`], whose
/// reader merges lines of the same step).
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
    /// The step's prompts and how each went (empty in logs that predate the record).
    pub prompts: Vec<PromptRecord>,
}

impl StepRow {
    fn new(m: &StepMetrics) -> Self {
        let known = |x: f64| Some(x).filter(|x| x.is_finite());
        let train = m.train.as_ref();
        Self {
            step: m.step,
            rollouts_used: m.rollouts_used,
            accuracy: train.map(|t| t.accuracy),
            eval_accuracy: m.eval.as_ref().map(|e| e.eval_accuracy),
            effective_ratio: m.effective_ratio().and_then(known),
            spearman: m.sampler.as_ref().and_then(|s| s.spearman),
            time_step_s: train.and_then(|t| known(t.time_step_s)),
            prompts: m.prompts.as_ref().map_or_else(Vec::new, |p| {
                p.prompt_ids
                    .iter()
                    .zip(&p.prompt_successes)
                    .enumerate()
                    .map(|(i, (&id, &successes))| PromptRecord {
                        step: m.step,
                        id,
                        successes,
                        predicted: p
                            .sampler_predicted
                            .as_ref()
                            .and_then(|v| v.get(i))
                            .map(|&x| x as f64),
                    })
                    .collect()
            }),
        }
    }
}

/// The rows of `path` in step order; no file means no steps yet.
pub fn read_steps(path: &Path) -> anyhow::Result<Vec<StepRow>> {
    let lines: Vec<StepMetrics> = read_metrics(path)?;
    Ok(lines.iter().map(StepRow::new).collect())
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
    /// Completions per prompt (k), to turn successes into rates.
    pub group_size: u32,
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
            group_size: run.config.rollout.group_size as u32,
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

    /// Every trained prompt of the run, in step order.
    pub fn prompts(&self) -> Vec<PromptRecord> {
        self.rows.iter().flat_map(|r| r.prompts.clone()).collect()
    }

    /// (step, Spearman ρ) of every step that has one.
    pub fn spearman_curve(&self) -> Vec<(f64, f64)> {
        self.rows
            .iter()
            .filter_map(|r| r.spearman.map(|x| (r.step as f64, x)))
            .collect()
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
            group_size: 4,
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

    /// A run folder of an ablation interrupted under the previous (untyped) metrics writer:
    /// the step-0 evaluation and step 1 as `augur grpo` wrote them, `kl`/`entropy` as `null`.
    #[test]
    fn lines_written_before_the_typed_schema_still_read() {
        let r = run(concat!(
            r#"{"eval_accuracy":0.4,"eval_prompts":50,"eval_reward":0.4,"rollouts_used":0,"step":0,"time_eval_s":22.5}"#,
            "\n",
            r#"{"accuracy":0.0625,"approx_kl_old":0.0001,"clip_frac":0.0,"entropy":null,"gen_tokens_per_s":103.7,"grad_norm":0.119,"kl":null,"loss":8.9e-7,"lr":0.0003,"optimizer_steps":1,"pg_loss":8.9e-7,"ratio_mean":0.9999,"response_len":26.875,"reward_mean":0.0625,"reward_std":0.242,"rollouts_used":32,"skipped":0,"step":1,"time_reference_s":2.1e-7,"time_reward_s":0.0002,"time_rollout_s":8.29,"time_step_s":41.5,"time_update_s":33.6,"train_tokens_per_s":67.3,"truncated_frac":0.59375,"zero_variance_groups":0.75}"#,
            "\n"
        ));
        assert_eq!(completed_steps(&r.rows), 1);
        assert_eq!(r.rows[1].accuracy, Some(0.0625));
        assert_eq!(r.rows[1].effective_ratio, Some(0.25));
        assert_eq!(r.total_rollouts(), 32.0);
        assert_eq!(r.wall_s(), 41.5);
        assert_eq!(r.accuracy_curve().1, vec![(0.0, 0.4)]);
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
