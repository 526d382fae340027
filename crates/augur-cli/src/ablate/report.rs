//! The real ablation's report: per-sampler means ± std over seeds as a Markdown table, a CSV
//! row per run and per step, and the plots (drawn by the shared [`augur_sampler::plot`]).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use augur_sampler::plot::{write_ablation_plots, SamplerCurves};

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
        let markdown = markdown_table(&header, &summaries);
        Self {
            summaries,
            runs,
            targets,
            markdown,
        }
    }

    /// Writes `runs.csv`, `steps.csv`, `summary.md`, `accuracy_vs_rollouts.{png,svg}` and
    /// `effective_ratio.{png,svg}` into `out`.
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
        write_ablation_plots(out, &samplers)
    }
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
