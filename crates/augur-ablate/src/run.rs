//! One run of an ablation as the report compares runs, whatever produced it: a row per step
//! (read from a run's `metrics.jsonl`, or built by the simulated learner) and the per-run numbers
//! the report compares (final accuracy, budget to a target, wall time, effective ratio, ρ, loss).

use std::path::Path;

use augur_train::grpo::selection::Holdout;
use augur_train::metrics::{read_metrics, SftStepMetrics, StepMetrics};

use crate::calibration::PromptRecord;
use crate::plot::trailing_mean;

/// What produced a run: decides what its budget is and where its accuracy comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `augur grpo` runs comparing prompt samplers; budget: completions generated.
    Grpo,
    /// `augur sft` runs comparing batch-selection methods; budget: examples trained on.
    Sft,
    /// The simulated learner (`--simulate`); budget: simulated completions.
    Simulated,
}

impl Mode {
    /// How `runs.csv` and `steps.csv` name the mode.
    pub fn key(self) -> &'static str {
        match self {
            Self::Grpo => "grpo",
            Self::Sft => "sft",
            Self::Simulated => "simulated",
        }
    }

    /// What the budget axis counts.
    pub fn budget(self) -> &'static str {
        match self {
            Self::Grpo | Self::Simulated => "rollouts",
            Self::Sft => "samples",
        }
    }
}

/// (x, y) points of one run, in x order.
pub type Curve = Vec<(f64, f64)>;

/// One step of a run (a step-0 line holds only an evaluation).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepRow {
    pub step: u64,
    /// Whether the line holds a training step (else only an evaluation).
    pub trained: bool,
    /// Completions generated so far (`rollouts_used`; GRPO and simulated runs).
    pub rollouts: Option<u64>,
    /// Examples trained on so far (`samples_trained`; SFT runs).
    pub samples: Option<u64>,
    /// Fraction of this step's training completions that were correct (GRPO).
    pub accuracy: Option<f64>,
    /// Fraction correct on the held-out set, on evaluation steps (simulated runs: the policy's
    /// expected accuracy over every prompt, each step).
    pub eval_accuracy: Option<f64>,
    /// Training loss of the step (SFT).
    pub loss: Option<f64>,
    /// Held-out loss, on evaluation steps (SFT).
    pub eval_loss: Option<f64>,
    /// `sampler_effective_ratio`, else `1 - zero_variance_groups`.
    pub effective_ratio: Option<f64>,
    /// `sampler_spearman` (null before the predictor has data).
    pub spearman: Option<f64>,
    /// `sampler_brier` (predictive samplers).
    pub brier: Option<f64>,
    /// `time_step_s`.
    pub time_step_s: Option<f64>,
    /// The step's prompts and how each went (empty in logs that predate the record).
    pub prompts: Vec<PromptRecord>,
}

/// `x` when finite.
fn known(x: f64) -> Option<f64> {
    Some(x).filter(|x| x.is_finite())
}

impl From<&StepMetrics> for StepRow {
    fn from(m: &StepMetrics) -> Self {
        let train = m.train.as_ref();
        Self {
            step: m.step,
            trained: train.is_some(),
            rollouts: m.rollouts_used,
            samples: None,
            accuracy: train.map(|t| t.accuracy),
            eval_accuracy: m.eval.as_ref().map(|e| e.eval_accuracy),
            loss: None,
            eval_loss: None,
            effective_ratio: m.effective_ratio().and_then(known),
            spearman: m.sampler.as_ref().and_then(|s| s.spearman),
            brier: m.sampler.as_ref().and_then(|s| s.brier),
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

impl From<&SftStepMetrics> for StepRow {
    fn from(m: &SftStepMetrics) -> Self {
        let train = m.train.as_ref();
        Self {
            step: m.step,
            trained: train.is_some(),
            samples: Some(m.samples_trained),
            loss: train.and_then(|t| known(t.loss)),
            eval_loss: m.eval.as_ref().and_then(|e| known(e.eval_loss)),
            time_step_s: train.and_then(|t| known(t.time_step_s)),
            ..Default::default()
        }
    }
}

/// The rows of a run's `metrics.jsonl` of `mode` in step order; no file means no steps yet.
pub fn read_steps(mode: Mode, path: &Path) -> anyhow::Result<Vec<StepRow>> {
    Ok(match mode {
        Mode::Sft => read_metrics::<SftStepMetrics>(path)?
            .iter()
            .map(StepRow::from)
            .collect(),
        Mode::Grpo | Mode::Simulated => read_metrics::<StepMetrics>(path)?
            .iter()
            .map(StepRow::from)
            .collect(),
    })
}

/// Training steps 1..=n logged without a gap: how far the run got.
pub fn completed_steps(rows: &[StepRow]) -> u64 {
    let mut n = 0;
    for r in rows.iter().filter(|r| r.step > 0) {
        if r.step != n + 1 || !r.trained {
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
    /// The simulated policy's expected accuracy over every prompt.
    Simulated,
}

impl AccuracySource {
    /// How `runs.csv` names it.
    pub fn key(self) -> &'static str {
        match self {
            Self::Eval => "eval",
            Self::Train => "train_last_quarter",
            Self::Simulated => "simulated_expected",
        }
    }

    /// How the Markdown table names it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Eval => "held-out eval",
            Self::Train => "train, last ¼ mean",
            Self::Simulated => "expected, all prompts",
        }
    }
}

/// One finished run of an ablation.
#[derive(Clone, Debug)]
pub struct Run {
    pub mode: Mode,
    /// Sampler or selection method, as named on the command line.
    pub method: String,
    /// Seed index k (0-based).
    pub seed: u64,
    /// Run folder (for `runs.csv`; empty for simulated runs).
    pub dir: String,
    /// Steps 1..=configured (plus a step-0 evaluation, if logged).
    pub rows: Vec<StepRow>,
    /// Completions per prompt (k), to turn successes into rates (GRPO and simulated runs).
    pub group_size: u32,
    /// The prompts the run kept out of the candidates for its first steps (`[sampler]
    /// holdout_fraction`), so the report can show how each sampler predicted them when it met
    /// them for the first time.
    pub holdout: Option<Holdout>,
}

impl Run {
    /// Training steps logged (a step-0 evaluation is not one).
    pub fn steps(&self) -> usize {
        self.rows.iter().filter(|r| r.step > 0).count()
    }

    /// The budget spent up to `row`: rollouts, or examples trained for SFT.
    fn budget_at(&self, row: &StepRow) -> Option<u64> {
        match self.mode {
            Mode::Sft => row.samples,
            Mode::Grpo | Mode::Simulated => row.rollouts,
        }
    }

    /// Each row with the budget spent and the training seconds elapsed up to it (a row that
    /// does not log its budget carries the last one).
    fn with_axes(&self) -> Vec<(f64, f64, &StepRow)> {
        let (mut budget, mut wall) = (0.0, 0.0);
        self.rows
            .iter()
            .map(|r| {
                budget = self.budget_at(r).map_or(budget, |x| x as f64);
                wall += r.time_step_s.unwrap_or(0.0);
                (budget, wall, r)
            })
            .collect()
    }

    /// The run's accuracy over training as (budget spent, accuracy) points. With held-out
    /// evaluations: their values. Without: at each step the mean training accuracy over the
    /// last quarter of the run's length up to it, the same smoothing as the final value, so a
    /// run reaches its own final accuracy at its last step at the latest.
    pub fn accuracy_curve(&self) -> (AccuracySource, Vec<(f64, f64)>) {
        self.accuracy_points(|(budget, _, _)| budget)
    }

    /// [`Self::accuracy_curve`] against training seconds instead of budget.
    pub fn accuracy_by_wall(&self) -> Vec<(f64, f64)> {
        self.accuracy_points(|(_, wall, _)| wall).1
    }

    fn accuracy_points(
        &self,
        x: impl Fn((f64, f64, &StepRow)) -> f64,
    ) -> (AccuracySource, Vec<(f64, f64)>) {
        let axes = self.with_axes();
        if axes.iter().any(|(_, _, r)| r.eval_accuracy.is_some()) {
            let pts = axes
                .iter()
                .filter_map(|&p| p.2.eval_accuracy.map(|a| (x(p), a)))
                .collect();
            let src = match self.mode {
                Mode::Simulated => AccuracySource::Simulated,
                Mode::Grpo | Mode::Sft => AccuracySource::Eval,
            };
            return (src, pts);
        }
        let train: Vec<(f64, f64)> = axes
            .iter()
            .filter_map(|&p| p.2.accuracy.map(|a| (x(p), a)))
            .collect();
        let window = train.len().div_ceil(4).max(1);
        (AccuracySource::Train, trailing_mean(&train, window))
    }

    /// Held-out loss as (budget spent, loss) and as (training seconds, loss) points.
    pub fn eval_loss_curves(&self) -> (Curve, Curve) {
        let axes = self.with_axes();
        let pts = |wall: bool| {
            axes.iter()
                .filter_map(|&(b, w, r)| r.eval_loss.map(|l| (if wall { w } else { b }, l)))
                .collect()
        };
        (pts(false), pts(true))
    }

    /// The last point of [`Self::accuracy_curve`].
    pub fn final_accuracy(&self) -> (AccuracySource, Option<f64>) {
        let (src, c) = self.accuracy_curve();
        (src, c.last().map(|p| p.1))
    }

    /// The last held-out loss.
    pub fn final_eval_loss(&self) -> Option<f64> {
        self.rows.iter().rev().find_map(|r| r.eval_loss)
    }

    /// Budget spent when the accuracy curve first reached `target`.
    pub fn budget_to(&self, target: f64) -> Option<f64> {
        let (_, c) = self.accuracy_curve();
        c.iter().find(|p| p.1 >= target - 1e-12).map(|p| p.0)
    }

    /// Budget spent over the run.
    pub fn total_budget(&self) -> f64 {
        self.rows
            .iter()
            .filter_map(|r| self.budget_at(r))
            .max()
            .unwrap_or(0) as f64
    }

    /// Training time: the sum of `time_step_s` (so a resumed run counts each step once).
    pub fn wall_s(&self) -> f64 {
        self.rows.iter().filter_map(|r| r.time_step_s).sum()
    }

    /// Mean of a per-step value over the steps after `warmup` that have it.
    pub fn mean_of(&self, warmup: u64, f: impl Fn(&StepRow) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self
            .rows
            .iter()
            .filter(|r| r.step > warmup)
            .filter_map(f)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// Every trained prompt of the run, in step order.
    pub fn prompts(&self) -> Vec<PromptRecord> {
        self.rows.iter().flat_map(|r| r.prompts.clone()).collect()
    }

    /// (step, value) of every step that has `f`.
    pub fn per_step(&self, f: impl Fn(&StepRow) -> Option<f64>) -> Vec<(f64, f64)> {
        self.rows
            .iter()
            .filter_map(|r| f(r).map(|x| (r.step as f64, x)))
            .collect()
    }

    /// The value of `points` (x ascending) at `x`: the last point at or before it.
    pub fn value_at(points: &[(f64, f64)], x: f64) -> Option<f64> {
        points
            .iter()
            .take_while(|p| p.0 <= x + 1e-9)
            .last()
            .map(|p| p.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &str) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        std::fs::write(&p, lines).unwrap();
        Run {
            mode: Mode::Grpo,
            method: "x".into(),
            seed: 0,
            dir: String::new(),
            rows: read_steps(Mode::Grpo, &p).unwrap(),
            group_size: 4,
            holdout: None,
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
        assert_eq!(r.budget_to(0.6), Some(128.0));
        assert_eq!(r.budget_to(0.9), None);
        assert_eq!(r.total_budget(), 160.0);
        assert_eq!(r.wall_s(), 5.5);
        assert_eq!(r.rows[0].effective_ratio, Some(0.5));
        assert_eq!(r.mean_of(0, |s| s.spearman), None);
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
        assert_eq!(r.mean_of(0, |s| s.spearman), Some(0.5));
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
        assert_eq!(r.total_budget(), 32.0);
        assert_eq!(r.wall_s(), 41.5);
        assert_eq!(r.accuracy_curve().1, vec![(0.0, 0.4)]);
    }

    #[test]
    fn gaps_and_bad_lines() {
        let r = run("{\"step\":1,\"accuracy\":0.5}\n{\"step\":3,\"accuracy\":0.5}\n");
        assert_eq!(completed_steps(&r.rows), 1);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        assert!(read_steps(Mode::Grpo, &p).unwrap().is_empty());
        std::fs::write(&p, "{\"step\":1}\nnot json\n").unwrap();
        let err = format!("{:#}", read_steps(Mode::Grpo, &p).unwrap_err());
        assert!(err.contains("metrics.jsonl:2"), "{err}");
    }
}
