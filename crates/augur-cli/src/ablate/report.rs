//! The real ablation's report: per-sampler means ± std over seeds as a Markdown table, a CSV
//! row per run and per step, and the plots (drawn by the shared [`augur_sampler::plot`]).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use augur_sampler::plot::{
    write_ablation_plots, write_prediction_plots, PredictionCurves, SamplerCurves,
};

use super::calibration::{brier, calibration, effective_ratio, first_appearances};
use super::metrics::{AccuracySource, RunMetrics};

/// Mean and sample standard deviation over seeds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    pub mean: f64,
    /// `None` with a single value.
    pub std: Option<f64>,
}

impl Stat {
    /// `None` for no values.
    pub fn of(v: &[f64]) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let std = (v.len() > 1)
            .then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
        Some(Self { mean, std })
    }

    fn show(&self, digits: usize) -> String {
        match self.std {
            Some(s) => format!("{:.digits$} ± {s:.digits$}", self.mean),
            None => format!("{:.digits$}", self.mean),
        }
    }
}

fn show(s: Option<Stat>, digits: usize) -> String {
    s.map_or("–".into(), |s| s.show(digits))
}

/// One sampler over its seeds.
#[derive(Debug)]
pub struct SamplerSummary {
    pub sampler: String,
    /// Where its accuracies come from ([`AccuracySource::label`], or `mixed`).
    pub accuracy_from: String,
    pub final_accuracy: Option<Stat>,
    /// Over seeds; `None` unless every seed with a target reached it.
    pub rollouts_to_target: Option<Stat>,
    /// Seeds that reached their target.
    pub reached: usize,
    /// Seeds that have a target.
    pub with_target: usize,
    /// `rollouts_to_target` over uniform's.
    pub ratio_vs_uniform: Option<f64>,
    pub total_rollouts: Option<Stat>,
    pub wall_s: Option<Stat>,
    /// Per-run mean over steps, then over seeds.
    pub effective_ratio: Option<Stat>,
    pub spearman: Option<Stat>,
}

/// How the per-seed targets were chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TargetFrom {
    /// `--target-accuracy`.
    Given(f64),
    /// The uniform run of the same seed.
    Uniform,
    /// Neither: no rollouts-to-target column values.
    None,
}

/// Everything the ablation reports.
pub struct Report {
    pub summaries: Vec<SamplerSummary>,
    pub runs: Vec<RunMetrics>,
    /// Target accuracy per seed index.
    pub targets: Vec<Option<f64>>,
    pub markdown: String,
}

impl Report {
    /// Summarises `runs` of `samplers` × `seeds` (sampler names in table order). The target of
    /// seed k is `target`, else the uniform run's final accuracy of seed k when uniform ran.
    pub fn new(
        title: &str,
        samplers: &[String],
        seeds: usize,
        runs: Vec<RunMetrics>,
        target: Option<f64>,
    ) -> Self {
        let from = match target {
            Some(t) => TargetFrom::Given(t),
            None if samplers.iter().any(|s| s == "uniform") => TargetFrom::Uniform,
            None => TargetFrom::None,
        };
        let targets: Vec<Option<f64>> = (0..seeds as u64)
            .map(|k| match from {
                TargetFrom::Given(t) => Some(t),
                TargetFrom::Uniform => runs
                    .iter()
                    .find(|r| r.sampler == "uniform" && r.seed == k)
                    .and_then(|r| r.final_accuracy().1),
                TargetFrom::None => None,
            })
            .collect();
        let mut summaries: Vec<SamplerSummary> = samplers
            .iter()
            .map(|s| summarise(s, &runs, &targets))
            .collect();
        let uniform_rt = summaries
            .iter()
            .find(|s| s.sampler == "uniform")
            .and_then(|s| s.rollouts_to_target);
        for s in &mut summaries {
            s.ratio_vs_uniform = s
                .rollouts_to_target
                .zip(uniform_rt)
                .filter(|(_, u)| u.mean > 0.0)
                .map(|(a, u)| a.mean / u.mean);
        }
        let steps = runs.iter().map(RunMetrics::steps).max().unwrap_or(0);
        let header = header(title, samplers.len(), seeds, steps, from, &targets);
        let mut markdown = markdown_table(&header, &summaries);
        markdown += &prompt_table(samplers, &runs);
        Self {
            summaries,
            runs,
            targets,
            markdown,
        }
    }

    /// Writes `runs.csv`, `steps.csv`, `summary.md`, `accuracy_vs_rollouts.{png,svg}`,
    /// `effective_ratio.{png,svg}` and, for predictive samplers, `calibration.{png,svg}` and
    /// `spearman.{png,svg}` into `out`.
    pub fn write(&self, out: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let write = |name: &str, text: &str| {
            let p = out.join(name);
            std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))
        };
        write("runs.csv", &self.runs_csv())?;
        write("steps.csv", &steps_csv(&self.runs))?;
        write("summary.md", &self.markdown)?;
        self.write_plots(out)
            .with_context(|| format!("cannot draw the plots in {}", out.display()))
    }

    /// One row per run.
    fn runs_csv(&self) -> String {
        let mut csv = String::from("sampler,seed,run_dir,steps,accuracy_source,final_accuracy,target_accuracy,rollouts_to_target,total_rollouts,wall_s,effective_ratio,spearman\n");
        for r in &self.runs {
            let (src, acc) = r.final_accuracy();
            let target = self.targets.get(r.seed as usize).copied().flatten();
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{},{},{},{},{:.3},{},{}",
                r.sampler,
                r.seed,
                csv_field(&r.dir),
                r.steps(),
                src.key(),
                cell(acc),
                cell(target),
                target
                    .and_then(|t| r.rollouts_to(t))
                    .map_or(String::new(), |x| format!("{x:.0}")),
                r.total_rollouts(),
                r.wall_s(),
                cell(r.mean_of(|s| s.effective_ratio)),
                cell(r.mean_of(|s| s.spearman)),
            );
        }
        csv
    }

    fn write_plots(&self, out: &Path) -> augur_sampler::Result<()> {
        let samplers: Vec<SamplerCurves> = self
            .summaries
            .iter()
            .map(|s| {
                let rs: Vec<&RunMetrics> = self
                    .runs
                    .iter()
                    .filter(|r| r.sampler == s.sampler)
                    .collect();
                SamplerCurves {
                    name: s.sampler.clone(),
                    accuracy: rs.iter().map(|r| r.accuracy_curve().1).collect(),
                    effective: rs.iter().map(|r| r.effective_curve()).collect(),
                }
            })
            .collect();
        write_ablation_plots(out, &samplers)?;
        let predictive: Vec<PredictionCurves> = self
            .summaries
            .iter()
            .filter_map(|s| {
                let rs: Vec<&RunMetrics> = self
                    .runs
                    .iter()
                    .filter(|r| r.sampler == s.sampler)
                    .collect();
                let records: Vec<_> = rs.iter().flat_map(|r| r.prompts()).collect();
                let k = rs.first()?.group_size;
                let bins = calibration(&records, k, CALIBRATION_BINS);
                (!bins.is_empty()).then(|| PredictionCurves {
                    name: s.sampler.clone(),
                    calibration: bins
                        .iter()
                        .map(|b| (b.mean_predicted, b.mean_observed))
                        .collect(),
                    spearman: rs.iter().map(|r| r.spearman_curve()).collect(),
                })
            })
            .collect();
        write_prediction_plots(out, &predictive)
    }
}

/// Equal-width bins of the predicted success rate in the calibration plot and table.
const CALIBRATION_BINS: usize = 10;

/// The prompt-level view of each sampler (means over seeds), from the per-prompt record the
/// trainer logs: how informative the groups were on each prompt's first appearance (where a
/// per-prompt predictor only has its prior), and how far the predictions were from the
/// observed success rates (Brier score; expected calibration error over 10 bins). Empty when
/// no run logged the record.
fn prompt_table(samplers: &[String], runs: &[RunMetrics]) -> String {
    if runs.iter().all(|r| r.prompts().is_empty()) {
        return String::new();
    }
    let mut md = String::from(
        "\n## Prompt-level view\n\nMeans over seeds. *First seen*: each prompt's first appearance in the run (a per-prompt predictor knows only its prior there). Brier: mean squared error of predicted vs observed success rate. ECE: expected calibration error over 10 bins of the prediction.\n\n| sampler | distinct prompts | effective ratio, first seen | effective ratio, repeats | Brier, first seen | Brier, all | ECE |\n|---|---|---|---|---|---|---|\n",
    );
    for sampler in samplers {
        let rs: Vec<&RunMetrics> = runs.iter().filter(|r| &r.sampler == sampler).collect();
        let per_run = |f: &dyn Fn(&RunMetrics) -> Option<f64>| {
            Stat::of(&rs.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
        };
        let distinct = per_run(&|r| Some(first_appearances(&r.prompts()).len() as f64));
        let first_eff =
            per_run(&|r| effective_ratio(&first_appearances(&r.prompts()), r.group_size));
        let repeat_eff = per_run(&|r| {
            let all = r.prompts();
            let first: Vec<_> = first_appearances(&all).into_iter().cloned().collect();
            let repeats: Vec<_> = all.iter().filter(|p| !first.contains(p)).collect();
            effective_ratio(&repeats, r.group_size)
        });
        let first_brier = per_run(&|r| brier(&first_appearances(&r.prompts()), r.group_size));
        let all_brier = per_run(&|r| {
            let all = r.prompts();
            brier(&all.iter().collect::<Vec<_>>(), r.group_size)
        });
        let ece = per_run(&|r| {
            let bins = calibration(&r.prompts(), r.group_size, CALIBRATION_BINS);
            let n: usize = bins.iter().map(|b| b.count).sum();
            (n > 0).then(|| {
                bins.iter()
                    .map(|b| b.count as f64 * (b.mean_predicted - b.mean_observed).abs())
                    .sum::<f64>()
                    / n as f64
            })
        });
        let _ = writeln!(
            md,
            "| {sampler} | {} | {} | {} | {} | {} | {} |",
            show(distinct, 1),
            show(first_eff, 2),
            show(repeat_eff, 2),
            show(first_brier, 3),
            show(all_brier, 3),
            show(ece, 3),
        );
    }
    md
}

fn summarise(sampler: &str, runs: &[RunMetrics], targets: &[Option<f64>]) -> SamplerSummary {
    let rs: Vec<&RunMetrics> = runs.iter().filter(|r| r.sampler == sampler).collect();
    let collect = |f: &dyn Fn(&RunMetrics) -> Option<f64>| -> Vec<f64> {
        rs.iter().filter_map(|r| f(r)).collect()
    };
    let mut sources: Vec<AccuracySource> = rs.iter().map(|r| r.final_accuracy().0).collect();
    sources.dedup();
    let accuracy_from = match sources.as_slice() {
        [one] => one.label().to_string(),
        _ => "mixed".into(),
    };
    let target = |r: &RunMetrics| targets.get(r.seed as usize).copied().flatten();
    let with_target = rs.iter().filter(|r| target(r).is_some()).count();
    let to_target = collect(&|r| target(r).and_then(|t| r.rollouts_to(t)));
    let reached = to_target.len();
    SamplerSummary {
        sampler: sampler.to_string(),
        accuracy_from,
        final_accuracy: Stat::of(&collect(&|r| r.final_accuracy().1)),
        rollouts_to_target: (with_target > 0 && reached == with_target)
            .then(|| Stat::of(&to_target))
            .flatten(),
        reached,
        with_target,
        ratio_vs_uniform: None,
        total_rollouts: Stat::of(&collect(&|r| Some(r.total_rollouts()))),
        wall_s: Stat::of(&collect(&|r| Some(r.wall_s()))),
        effective_ratio: Stat::of(&collect(&|r| r.mean_of(|s| s.effective_ratio))),
        spearman: Stat::of(&collect(&|r| r.mean_of(|s| s.spearman))),
    }
}

fn header(
    title: &str,
    samplers: usize,
    seeds: usize,
    steps: usize,
    from: TargetFrom,
    targets: &[Option<f64>],
) -> String {
    let per_seed = targets
        .iter()
        .map(|t| t.map_or("–".into(), |t| format!("{t:.4}")))
        .collect::<Vec<_>>()
        .join(", ");
    let target = match from {
        TargetFrom::Given(_) => format!("--target-accuracy, {per_seed}"),
        TargetFrom::Uniform => format!("uniform's final accuracy per seed, {per_seed}"),
        TargetFrom::None => "none (run uniform too, or pass --target-accuracy)".into(),
    };
    format!(
        "Ablation of {title}: {samplers} sampler(s) × {seeds} seed(s), up to {steps} step(s) per run; \
         mean ± std over seeds.\n\
         Final accuracy: the last held-out `eval_accuracy` when a run logs one, else the mean training \
         accuracy over the last quarter of steps (column \"accuracy from\").\n\
         Target accuracy: {target}.\n"
    )
}

/// The summary as a Markdown table under `header`.
fn markdown_table(header: &str, s: &[SamplerSummary]) -> String {
    let mut md = format!("{header}\n");
    md.push_str("| sampler | accuracy from | final acc | rollouts to target | × uniform | total rollouts | wall s | effective ratio | Spearman ρ |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for m in s {
        let to_target = match (m.rollouts_to_target, m.with_target) {
            (_, 0) => "–".to_string(),
            (Some(st), _) => st.show(0),
            (None, n) => format!("not reached ({}/{n})", m.reached),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            m.sampler,
            m.accuracy_from,
            show(m.final_accuracy, 3),
            to_target,
            m.ratio_vs_uniform.map_or("–".into(), |x| format!("{x:.2}")),
            show(m.total_rollouts, 0),
            show(m.wall_s, 1),
            show(m.effective_ratio, 3),
            show(m.spearman, 3),
        );
    }
    md
}

/// One row per run × step.
fn steps_csv(runs: &[RunMetrics]) -> String {
    let mut csv = String::from(
        "sampler,seed,step,rollouts_used,accuracy,eval_accuracy,effective_ratio,spearman,time_step_s\n",
    );
    for r in runs {
        for s in &r.rows {
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{},{},{},{}",
                r.sampler,
                r.seed,
                s.step,
                s.rollouts_used.map_or(String::new(), |x| x.to_string()),
                cell(s.accuracy),
                cell(s.eval_accuracy),
                cell(s.effective_ratio),
                cell(s.spearman),
                cell(s.time_step_s),
            );
        }
    }
    csv
}

/// A CSV cell of an optional number (empty when absent).
fn cell(v: Option<f64>) -> String {
    v.map_or(String::new(), |x| format!("{x:.6}"))
}

/// `s` quoted when it holds a comma, quote or newline (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::super::metrics::StepRow;
    use super::*;

    fn run(sampler: &str, seed: u64, accs: &[f64], eff: f64) -> RunMetrics {
        RunMetrics {
            sampler: sampler.into(),
            seed,
            dir: format!("out/runs/{sampler}-seed{seed}"),
            rows: accs
                .iter()
                .enumerate()
                .map(|(i, &a)| StepRow {
                    step: i as u64 + 1,
                    rollouts_used: Some(10 * (i as u64 + 1)),
                    accuracy: Some(a),
                    effective_ratio: Some(eff),
                    time_step_s: Some(2.0),
                    ..Default::default()
                })
                .collect(),
            group_size: 4,
        }
    }

    fn report(target: Option<f64>) -> Report {
        let runs = vec![
            run("uniform", 0, &[0.1, 0.2, 0.3, 0.4], 0.5),
            run("uniform", 1, &[0.1, 0.2, 0.3, 0.2], 0.5),
            run("mopps", 0, &[0.1, 0.5, 0.5, 0.5], 0.8),
            run("mopps", 1, &[0.1, 0.1, 0.15, 0.1], 0.7),
        ];
        let samplers = ["uniform".to_string(), "mopps".into()];
        Report::new("`c.toml`", &samplers, 2, runs, target)
    }

    #[test]
    fn prompt_table_and_plots_come_from_the_per_prompt_record() {
        use super::super::calibration::PromptRecord;
        let rec = |step, id, successes, predicted| PromptRecord {
            step,
            id,
            successes,
            predicted,
        };
        let mut mopps = run("mopps", 0, &[0.1, 0.5], 0.8);
        // Step 1: prompts 0 and 1 seen first (0 solved 2/4, 1 never); step 2: 0 again (4/4).
        mopps.rows[0].prompts = vec![rec(1, 0, 2, Some(0.5)), rec(1, 1, 0, Some(0.5))];
        mopps.rows[1].prompts = vec![rec(2, 0, 4, Some(0.75))];
        let mut uniform = run("uniform", 0, &[0.1, 0.2], 0.5);
        uniform.rows[0].prompts = vec![rec(1, 3, 1, None)];
        let samplers = ["uniform".to_string(), "mopps".into()];
        let r = Report::new("`c.toml`", &samplers, 1, vec![uniform, mopps], None);
        // mopps: 2 distinct, first-seen effective 1/2, repeats 0/1; Brier first seen
        // ((0.5-0.5)^2 + 0.5^2)/2 = 0.125, all (0 + 0.25 + 0.0625)/3 = 0.104.
        assert!(
            r.markdown
                .contains("| mopps | 2.0 | 0.50 | 0.00 | 0.125 | 0.104 | 0.250 |"),
            "{}",
            r.markdown
        );
        assert!(r
            .markdown
            .contains("| uniform | 1.0 | 1.00 | – | – | – | – |"));
        let dir = tempfile::tempdir().unwrap();
        r.write(dir.path()).unwrap();
        assert!(dir.path().join("calibration.svg").exists());
        assert!(dir.path().join("spearman.svg").exists());
    }

    #[test]
    fn stat_is_mean_and_sample_std() {
        let s = Stat::of(&[1.0, 3.0]).unwrap();
        assert_eq!((s.mean, s.std), (2.0, Some(2f64.sqrt())));
        assert_eq!(Stat::of(&[4.0]).unwrap().std, None);
        assert_eq!(Stat::of(&[]), None);
    }

    #[test]
    fn targets_come_from_uniform_of_the_same_seed() {
        let r = report(None);
        // 4 steps: the last quarter is the last step.
        assert_eq!(r.targets, vec![Some(0.4), Some(0.2)]);
        let (u, m) = (&r.summaries[0], &r.summaries[1]);
        assert_eq!(u.rollouts_to_target.unwrap().mean, 30.0);
        assert_eq!(u.accuracy_from, "train, last ¼ mean");
        // mopps seed 1 never reaches 0.2.
        assert_eq!(
            (m.reached, m.with_target, m.rollouts_to_target),
            (1, 2, None)
        );
        assert!(r.markdown.contains("not reached (1/2)"), "{}", r.markdown);
        assert!(r.markdown.contains("| mopps |"), "{}", r.markdown);
        assert!((m.effective_ratio.unwrap().mean - 0.75).abs() < 1e-12);
        assert_eq!(m.wall_s.unwrap().mean, 8.0);
    }

    #[test]
    fn a_given_target_is_used_and_compared_to_uniform() {
        let r = report(Some(0.15));
        let m = &r.summaries[1];
        assert_eq!(m.rollouts_to_target.unwrap().mean, 25.0);
        assert_eq!(m.ratio_vs_uniform, Some(1.25));
        assert!(r.markdown.contains("--target-accuracy"), "{}", r.markdown);
        let csv = r.runs_csv();
        assert_eq!(csv.lines().count(), 5);
        assert_eq!(steps_csv(&r.runs).lines().count(), 17);
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}
