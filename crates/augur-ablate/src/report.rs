//! The report of every ablation mode: per-method means ± std over seeds as one summary type and
//! one Markdown table, `runs.csv` (a row per run), `steps.csv` (a row per step), `summary.json`
//! and the plots.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::calibration::{
    brier, calibration, effective_ratio, first_appearances, last_outcomes, spearman, LastOutcome,
    PromptRecord,
};
use crate::plot::{
    write_band_plot, write_prediction_plots, write_smoothed_plot, PlotLabels, PredictionCurves,
    SeedCurves,
};
use crate::run::{AccuracySource, Mode, Run};

/// Mean and sample standard deviation over seeds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
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

/// One method (sampler or selection rule) over its seeds; the same type for every mode.
#[derive(Debug, Clone, Serialize)]
pub struct MethodSummary {
    pub method: String,
    /// Where its accuracies come from ([`AccuracySource::label`], or `mixed`).
    pub accuracy_from: String,
    pub final_accuracy: Option<Stat>,
    /// Budget (rollouts, or samples for SFT) to reach the seed's target accuracy; `None`
    /// unless every seed with a target reached it.
    pub budget_to_target: Option<Stat>,
    /// Seeds that reached their target.
    pub reached: usize,
    /// Seeds that have a target.
    pub with_target: usize,
    /// `budget_to_target` over uniform's.
    pub ratio_vs_uniform: Option<f64>,
    pub total_budget: Option<Stat>,
    pub budget_per_step: Option<Stat>,
    /// Training seconds (sum of the steps' times).
    pub wall_s: Option<Stat>,
    /// Per-run mean over steps, then over seeds.
    pub effective_ratio: Option<Stat>,
    /// Per-run means over the steps after the warm-up, then over seeds.
    pub spearman: Option<Stat>,
    pub brier: Option<Stat>,
    /// The last held-out loss (SFT).
    pub final_eval_loss: Option<Stat>,
    /// Held-out accuracy and loss at the equal wall-clock budget ([`Report::equal_wall_s`]):
    /// each run's last evaluation within it.
    pub accuracy_at_equal_wall: Option<Stat>,
    pub eval_loss_at_equal_wall: Option<Stat>,
}

/// How the per-seed targets were chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TargetFrom {
    /// Given (`--target-accuracy`, or the simulated config's `target_accuracy`).
    Given(f64),
    /// The uniform run of the same seed.
    Uniform,
    /// Neither: no budget-to-target values.
    None,
}

/// What the report covers.
pub struct ReportSpec<'a> {
    /// What was ablated, for the header (e.g. the config file).
    pub title: &'a str,
    pub mode: Mode,
    /// Method names in table order.
    pub methods: &'a [String],
    pub seeds: usize,
    /// Accuracy whose budget-to-reach is compared; default: uniform's final accuracy per seed.
    pub target: Option<f64>,
    /// Steps left out of the mean ρ and Brier (predictors need history first).
    pub warmup: u64,
}

/// Everything an ablation reports.
pub struct Report {
    pub mode: Mode,
    pub summaries: Vec<MethodSummary>,
    pub runs: Vec<Run>,
    /// Target accuracy per seed index.
    pub targets: Vec<Option<f64>>,
    /// The equal wall-clock budget: the shortest run's training seconds.
    pub equal_wall_s: f64,
    pub markdown: String,
}

impl Report {
    /// Summarises `runs`. The target of seed k is `spec.target`, else the uniform run's final
    /// accuracy of seed k when uniform ran.
    pub fn new(spec: &ReportSpec, runs: Vec<Run>) -> Self {
        let methods = spec.methods;
        let from = match spec.target {
            Some(t) => TargetFrom::Given(t),
            None if methods.iter().any(|s| s == "uniform") => TargetFrom::Uniform,
            None => TargetFrom::None,
        };
        let targets: Vec<Option<f64>> = (0..spec.seeds as u64)
            .map(|k| match from {
                TargetFrom::Given(t) => Some(t),
                TargetFrom::Uniform => runs
                    .iter()
                    .find(|r| r.method == "uniform" && r.seed == k)
                    .and_then(|r| r.final_accuracy().1),
                TargetFrom::None => None,
            })
            .collect();
        let equal_wall_s = runs.iter().map(Run::wall_s).fold(f64::INFINITY, f64::min);
        let equal_wall_s = if equal_wall_s.is_finite() {
            equal_wall_s
        } else {
            0.0
        };
        let mut summaries: Vec<MethodSummary> = methods
            .iter()
            .map(|s| summarise(s, &runs, &targets, spec.warmup, equal_wall_s))
            .collect();
        let uniform_rt = summaries
            .iter()
            .find(|s| s.method == "uniform")
            .and_then(|s| s.budget_to_target);
        for s in &mut summaries {
            s.ratio_vs_uniform = s
                .budget_to_target
                .zip(uniform_rt)
                .filter(|(_, u)| u.mean > 0.0)
                .map(|(a, u)| a.mean / u.mean);
        }
        let steps = runs.iter().map(Run::steps).max().unwrap_or(0);
        let header = header(spec, steps, from, &targets, equal_wall_s);
        let mut markdown = markdown_table(&header, spec.mode, &summaries);
        markdown += &prompt_table(methods, &runs);
        Self {
            mode: spec.mode,
            summaries,
            runs,
            targets,
            equal_wall_s,
            markdown,
        }
    }

    /// Writes `runs.csv`, `steps.csv`, `summary.md`, `summary.json` and the plots into `out`.
    pub fn write(&self, out: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let write = |name: &str, text: &str| -> anyhow::Result<()> {
            let p = out.join(name);
            std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))
        };
        write("runs.csv", &self.runs_csv())?;
        write("steps.csv", &steps_csv(&self.runs))?;
        write("summary.md", &self.markdown)?;
        write(
            "summary.json",
            &serde_json::to_string_pretty(&self.summaries)?,
        )?;
        self.write_plots(out)
            .with_context(|| format!("cannot draw the plots in {}", out.display()))
    }

    /// One row per run.
    fn runs_csv(&self) -> String {
        let mut csv = String::from(RUNS_CSV_HEADER);
        for r in &self.runs {
            let (src, acc) = r.final_accuracy();
            let target = self.targets.get(r.seed as usize).copied().flatten();
            let total = format!("{:.0}", r.total_budget());
            let (rollouts, samples) = match r.mode {
                Mode::Sft => (String::new(), total),
                Mode::Grpo | Mode::Simulated => (total, String::new()),
            };
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{},{},{},{},{rollouts},{samples},{:.3},{},{},{},{}",
                r.mode.key(),
                r.method,
                r.seed,
                csv_field(&r.dir),
                r.steps(),
                src.key(),
                cell(acc),
                cell(target),
                target
                    .and_then(|t| r.budget_to(t))
                    .map_or(String::new(), |x| format!("{x:.0}")),
                r.wall_s(),
                cell(r.mean_of(0, |s| s.effective_ratio)),
                cell(r.mean_of(0, |s| s.spearman)),
                cell(r.mean_of(0, |s| s.brier)),
                cell(r.final_eval_loss()),
            );
        }
        csv
    }

    fn runs_of<'a>(&'a self, method: &'a str) -> impl Iterator<Item = &'a Run> + 'a {
        self.runs.iter().filter(move |r| r.method == method)
    }

    /// Each method's curves of `f`, one per seed.
    fn curves(&self, f: impl Fn(&Run) -> Vec<(f64, f64)>) -> Vec<SeedCurves> {
        self.summaries
            .iter()
            .map(|s| SeedCurves {
                name: s.method.clone(),
                curves: self.runs_of(&s.method).map(&f).collect(),
            })
            .collect()
    }

    fn write_plots(&self, out: &Path) -> anyhow::Result<()> {
        let budget = self.mode.budget();
        let stem = format!("accuracy_vs_{budget}");
        let title = format!("Accuracy vs {budget} (mean over seeds, range shaded)");
        let labels = |stem, title, x, y| PlotLabels { stem, title, x, y };
        write_band_plot(
            out,
            &labels(&stem, &title, budget, "accuracy"),
            &self.curves(|r| r.accuracy_curve().1),
        )?;
        write_band_plot(
            out,
            &labels(
                "accuracy_vs_wall",
                "Accuracy vs training seconds (mean over seeds, range shaded)",
                "training seconds",
                "accuracy",
            ),
            &self.curves(Run::accuracy_by_wall),
        )?;
        let stem = format!("eval_loss_vs_{budget}");
        let title = format!("Held-out loss vs {budget} (mean over seeds, range shaded)");
        write_band_plot(
            out,
            &labels(&stem, &title, budget, "held-out loss"),
            &self.curves(|r| r.eval_loss_curves().0),
        )?;
        write_band_plot(
            out,
            &labels(
                "eval_loss_vs_wall",
                "Held-out loss vs training seconds (mean over seeds, range shaded)",
                "training seconds",
                "held-out loss",
            ),
            &self.curves(|r| r.eval_loss_curves().1),
        )?;
        write_smoothed_plot(
            out,
            &labels(
                "effective_ratio",
                "Effective-prompt ratio vs step (mean over seeds, 5-step trailing mean)",
                "step",
                "fraction with 0<s<k",
            ),
            &self.curves(|r| r.per_step(|s| s.effective_ratio)),
            5,
        )?;
        let predictive: Vec<PredictionCurves> = self
            .summaries
            .iter()
            .filter_map(|s| {
                let rs: Vec<&Run> = self.runs_of(&s.method).collect();
                let records: Vec<_> = rs.iter().flat_map(|r| r.prompts()).collect();
                let k = rs.first()?.group_size;
                let bins = calibration(&records, k, CALIBRATION_BINS);
                (!bins.is_empty()).then(|| PredictionCurves {
                    name: s.method.clone(),
                    calibration: bins
                        .iter()
                        .map(|b| (b.mean_predicted, b.mean_observed))
                        .collect(),
                    spearman: rs.iter().map(|r| r.per_step(|s| s.spearman)).collect(),
                })
            })
            .collect();
        write_prediction_plots(out, &predictive)
    }
}

/// The columns of `runs.csv`, one row per run in every mode. `budget_to_target`, like the
/// budget, counts rollouts (GRPO, simulated) or trained samples (SFT); a column a mode does not
/// have is empty.
pub const RUNS_CSV_HEADER: &str = "mode,method,seed,run_dir,steps,accuracy_source,final_accuracy,target_accuracy,budget_to_target,rollouts,samples,wall_s,effective_ratio,spearman,brier,final_eval_loss\n";

/// The columns of `steps.csv`, one row per logged step in every mode (a column a mode does not
/// have is empty; `wall_s` is the training seconds up to and including the step).
pub const STEPS_CSV_HEADER: &str = "mode,method,seed,step,rollouts,samples,wall_s,accuracy,eval_accuracy,loss,eval_loss,effective_ratio,spearman,brier,time_step_s\n";

/// Equal-width bins of the predicted success rate in the calibration plot and table.
const CALIBRATION_BINS: usize = 10;

/// The prompt-level view of each sampler (means over seeds), from the per-prompt record the
/// trainer logs: how informative the groups were on each prompt's first appearance (where a
/// per-prompt predictor only has its prior), and how far the predictions were from the
/// observed success rates (Brier score; expected calibration error over 10 bins). Empty when
/// no run logged the record.
fn prompt_table(methods: &[String], runs: &[Run]) -> String {
    // Each run's records, read once.
    let records: Vec<_> = runs.iter().map(|r| (r, r.prompts())).collect();
    if records.iter().all(|(_, p)| p.is_empty()) {
        return String::new();
    }
    let mut md = String::from(
        "\n## Prompt-level view\n\nMeans over seeds. *First seen*: each prompt's first appearance in the run (a per-prompt predictor knows only its prior there). Brier: mean squared error of predicted vs observed success rate. ECE: expected calibration error over 10 bins of the prediction.\n\n| sampler | distinct prompts | effective ratio, first seen | effective ratio, repeats | Brier, first seen | Brier, all | ECE |\n|---|---|---|---|---|---|---|\n",
    );
    for method in methods {
        let rs: Vec<_> = records
            .iter()
            .filter(|(r, _)| &r.method == method)
            .collect();
        let per_run = |f: &dyn Fn(&Run, &[PromptRecord]) -> Option<f64>| {
            Stat::of(&rs.iter().filter_map(|(r, p)| f(r, p)).collect::<Vec<_>>())
        };
        let distinct = per_run(&|_, all| Some(first_appearances(all).len() as f64));
        let first_eff = per_run(&|r, all| effective_ratio(&first_appearances(all), r.group_size));
        let repeat_eff = per_run(&|r, all| {
            let first: Vec<_> = first_appearances(all).into_iter().cloned().collect();
            let repeats: Vec<_> = all.iter().filter(|p| !first.contains(p)).collect();
            effective_ratio(&repeats, r.group_size)
        });
        let first_brier = per_run(&|r, all| brier(&first_appearances(all), r.group_size));
        let all_brier = per_run(&|r, all| brier(&all.iter().collect::<Vec<_>>(), r.group_size));
        let ece = per_run(&|r, all| {
            let bins = calibration(all, r.group_size, CALIBRATION_BINS);
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
            "| {method} | {} | {} | {} | {} | {} | {} |",
            show(distinct, 1),
            show(first_eff, 2),
            show(repeat_eff, 2),
            show(first_brier, 3),
            show(all_brier, 3),
            show(ece, 3),
        );
    }
    md + &last_outcome_table(methods, &records) + &holdout_table(methods, &records)
}

/// Which prompts each sampler picked, by how the prompt's previous group in the run went, and
/// how often each kind gave an informative group: whether a sampler's gain comes from
/// re-picking prompts that were mixed (and how often those stay mixed), or its loss from
/// re-picking prompts that were solved or unsolved.
fn last_outcome_table(methods: &[String], records: &[(&Run, Vec<PromptRecord>)]) -> String {
    let mut md = String::from(
        "\n### Picks by the prompt's last outcome\n\nEach pick is classed by the same prompt's previous group in the run: *first* pick, last group *unsolved* (0 of k right), *mixed*, or *solved* (k of k). Per class: its share of the run's picks, and in brackets the effective ratio of those picks (the share of their groups that were mixed); means over seeds.\n\n| sampler | first | last unsolved | last mixed | last solved |\n|---|---|---|---|---|\n",
    );
    for method in methods {
        let runs: Vec<_> = records
            .iter()
            .filter(|(r, p)| &r.method == method && !p.is_empty())
            .map(|(r, p)| (r.group_size, last_outcomes(p, r.group_size)))
            .collect();
        if runs.is_empty() {
            continue;
        }
        let cells: Vec<String> = LastOutcome::ALL
            .iter()
            .map(|state| {
                // Per run: this class's share of the picks, and its picks' effective ratio.
                let (shares, effs): (Vec<f64>, Vec<Option<f64>>) = runs
                    .iter()
                    .map(|(k, all)| {
                        let picks: Vec<&PromptRecord> = all
                            .iter()
                            .filter(|(s, _)| s == state)
                            .map(|&(_, p)| p)
                            .collect();
                        (
                            picks.len() as f64 / all.len() as f64,
                            effective_ratio(&picks, *k),
                        )
                    })
                    .unzip();
                let share = Stat::of(&shares);
                let eff = Stat::of(&effs.into_iter().flatten().collect::<Vec<_>>());
                let mean = |s: Option<Stat>| s.map_or("–".into(), |s| format!("{:.2}", s.mean));
                format!("{} ({})", mean(share), mean(eff))
            })
            .collect();
        let _ = writeln!(md, "| {method} | {} |", cells.join(" | "));
    }
    md
}

/// How each sampler did on the first appearances of the prompts its runs held out of the first
/// steps (`[sampler] holdout_fraction`), next to the first appearances of the other prompts:
/// a predictor that generalises across prompts (GPS) can rank prompts it never saw, a
/// per-prompt one (MoPPS, DPS) has only its prior there. Empty when no run held prompts out.
fn holdout_table(methods: &[String], records: &[(&Run, Vec<PromptRecord>)]) -> String {
    let Some(h) = records.iter().find_map(|(r, _)| r.holdout) else {
        return String::new();
    };
    let mut md = format!(
        "\n### Held-out prompts, first seen\n\nEach run kept a seeded {:.0}% of the prompts out of the candidates for its first {} steps (`[sampler] holdout_fraction`, `holdout_steps`), so every sampler met them for the first time after learning from the others. Per run, over the first appearances of the held-out prompts (*held out*) and of the other prompts (*others*): how many, the effective ratio, the Brier score, and ρ (Spearman of predicted vs observed success rate over those first appearances; – where the predictions are constant, as a per-prompt prior's are); means over seeds.\n\n| sampler | held out: n | effective ratio | Brier | ρ | others: n | effective ratio | Brier | ρ |\n|---|---|---|---|---|---|---|---|---|\n",
        100.0 * h.fraction,
        h.steps
    );
    for method in methods {
        let rs: Vec<_> = records
            .iter()
            .filter(|(r, _)| &r.method == method && r.holdout.is_some())
            .collect();
        let mut cells = Vec::new();
        for held in [true, false] {
            let per_run = |f: &dyn Fn(&[&PromptRecord], u32) -> Option<f64>| {
                let v: Vec<f64> = rs
                    .iter()
                    .filter_map(|(r, all)| {
                        let h = r.holdout?;
                        let first: Vec<&PromptRecord> = first_appearances(all)
                            .into_iter()
                            .filter(|p| h.contains(p.id) == held)
                            .collect();
                        f(&first, r.group_size)
                    })
                    .collect();
                Stat::of(&v)
            };
            cells.push(show(per_run(&|f, _| Some(f.len() as f64)), 1));
            cells.push(show(per_run(&effective_ratio), 2));
            cells.push(show(per_run(&brier), 3));
            cells.push(show(per_run(&spearman), 2));
        }
        let _ = writeln!(md, "| {method} | {} |", cells.join(" | "));
    }
    md
}

fn summarise(
    method: &str,
    runs: &[Run],
    targets: &[Option<f64>],
    warmup: u64,
    equal_wall_s: f64,
) -> MethodSummary {
    let rs: Vec<&Run> = runs.iter().filter(|r| r.method == method).collect();
    let stat = |f: &dyn Fn(&Run) -> Option<f64>| -> Option<Stat> {
        Stat::of(&rs.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
    };
    let mut sources: Vec<AccuracySource> = rs.iter().map(|r| r.final_accuracy().0).collect();
    sources.dedup();
    let accuracy_from = match sources.as_slice() {
        [one] => one.label().to_string(),
        _ => "mixed".into(),
    };
    let target = |r: &Run| targets.get(r.seed as usize).copied().flatten();
    let with_target = rs.iter().filter(|r| target(r).is_some()).count();
    let to_target: Vec<f64> = rs
        .iter()
        .filter_map(|r| target(r).and_then(|t| r.budget_to(t)))
        .collect();
    let reached = to_target.len();
    MethodSummary {
        method: method.to_string(),
        accuracy_from,
        final_accuracy: stat(&|r| r.final_accuracy().1),
        budget_to_target: (with_target > 0 && reached == with_target)
            .then(|| Stat::of(&to_target))
            .flatten(),
        reached,
        with_target,
        ratio_vs_uniform: None,
        total_budget: stat(&|r| Some(r.total_budget())),
        budget_per_step: stat(&|r| (r.steps() > 0).then(|| r.total_budget() / r.steps() as f64)),
        wall_s: stat(&|r| Some(r.wall_s())),
        effective_ratio: stat(&|r| r.mean_of(0, |s| s.effective_ratio)),
        spearman: stat(&|r| r.mean_of(warmup, |s| s.spearman)),
        brier: stat(&|r| r.mean_of(warmup, |s| s.brier)),
        final_eval_loss: stat(&Run::final_eval_loss),
        accuracy_at_equal_wall: stat(&|r| Run::value_at(&r.accuracy_by_wall(), equal_wall_s)),
        eval_loss_at_equal_wall: stat(&|r| Run::value_at(&r.eval_loss_curves().1, equal_wall_s)),
    }
}

fn header(
    spec: &ReportSpec,
    steps: usize,
    from: TargetFrom,
    targets: &[Option<f64>],
    equal_wall_s: f64,
) -> String {
    let per_seed = targets
        .iter()
        .map(|t| t.map_or("–".into(), |t| format!("{t:.4}")))
        .collect::<Vec<_>>()
        .join(", ");
    let target = match from {
        TargetFrom::Given(_) => format!("given (--target-accuracy or the config), {per_seed}"),
        TargetFrom::Uniform => format!("uniform's final accuracy per seed, {per_seed}"),
        TargetFrom::None => "none (run uniform too, or pass --target-accuracy)".into(),
    };
    let budget = spec.mode.budget();
    format!(
        "Ablation ({mode}) of {title}: {methods} method(s) × {seeds} seed(s), up to {steps} step(s) per run; \
         mean ± std over seeds; budget: {budget}.\n\
         Final accuracy: the last held-out `eval_accuracy` when a run logs one, else the mean training \
         accuracy over the last quarter of steps (column \"accuracy from\"); every run of a method trains \
         the same steps, so for SFT the final values are at equal trained samples.\n\
         At equal wall-clock: each run's last evaluation within {equal_wall_s:.1} training seconds (the shortest run's).\n\
         Target accuracy: {target}.\n",
        mode = spec.mode.key(),
        title = spec.title,
        methods = spec.methods.len(),
        seeds = spec.seeds,
    )
}

/// The summary as a Markdown table under `header`.
fn markdown_table(header: &str, mode: Mode, s: &[MethodSummary]) -> String {
    let b = mode.budget();
    let mut md = format!("{header}\n");
    let _ = writeln!(
        md,
        "| method | accuracy from | final acc | {b} to target | × uniform | total {b} | {b}/step | wall s | effective ratio | Spearman ρ | Brier | final eval loss | acc, equal wall | eval loss, equal wall |"
    );
    md.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for m in s {
        let to_target = match (m.budget_to_target, m.with_target) {
            (_, 0) => "–".to_string(),
            (Some(st), _) => st.show(0),
            (None, n) => format!("not reached ({}/{n})", m.reached),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            m.method,
            m.accuracy_from,
            show(m.final_accuracy, 3),
            to_target,
            m.ratio_vs_uniform.map_or("–".into(), |x| format!("{x:.2}")),
            show(m.total_budget, 0),
            show(m.budget_per_step, 0),
            show(m.wall_s, 1),
            show(m.effective_ratio, 3),
            show(m.spearman, 3),
            show(m.brier, 4),
            show(m.final_eval_loss, 4),
            show(m.accuracy_at_equal_wall, 3),
            show(m.eval_loss_at_equal_wall, 4),
        );
    }
    md
}

/// One row per run × step.
fn steps_csv(runs: &[Run]) -> String {
    let mut csv = String::from(STEPS_CSV_HEADER);
    let count = |x: Option<u64>| x.map_or(String::new(), |x| x.to_string());
    for r in runs {
        let mut wall = 0.0;
        for s in &r.rows {
            wall += s.time_step_s.unwrap_or(0.0);
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{},{wall:.3},{},{},{},{},{},{},{},{}",
                r.mode.key(),
                r.method,
                r.seed,
                s.step,
                count(s.rollouts),
                count(s.samples),
                cell(s.accuracy),
                cell(s.eval_accuracy),
                cell(s.loss),
                cell(s.eval_loss),
                cell(s.effective_ratio),
                cell(s.spearman),
                cell(s.brier),
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
    use super::*;
    use crate::run::StepRow;

    fn run(sampler: &str, seed: u64, accs: &[f64], eff: f64) -> Run {
        Run {
            mode: Mode::Grpo,
            method: sampler.into(),
            seed,
            dir: format!("out/runs/{sampler}-seed{seed}"),
            rows: accs
                .iter()
                .enumerate()
                .map(|(i, &a)| StepRow {
                    step: i as u64 + 1,
                    trained: true,
                    rollouts: Some(10 * (i as u64 + 1)),
                    accuracy: Some(a),
                    effective_ratio: Some(eff),
                    time_step_s: Some(2.0),
                    ..Default::default()
                })
                .collect(),
            group_size: 4,
            holdout: None,
        }
    }

    fn spec(methods: &[String], seeds: usize, target: Option<f64>) -> ReportSpec<'_> {
        ReportSpec {
            title: "`c.toml`",
            mode: Mode::Grpo,
            methods,
            seeds,
            target,
            warmup: 0,
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
        Report::new(&spec(&samplers, 2, target), runs)
    }

    #[test]
    fn prompt_table_and_plots_come_from_the_per_prompt_record() {
        use crate::calibration::PromptRecord;
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
        let r = Report::new(&spec(&samplers, 1, None), vec![uniform, mopps]);
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
        // Picks by last outcome: mopps picked 0 and 1 first (one mixed), then 0 again after
        // its mixed group (solved this time: not informative).
        assert!(
            r.markdown
                .contains("| mopps | 0.67 (0.50) | 0.00 (–) | 0.33 (0.00) | 0.00 (–) |"),
            "{}",
            r.markdown
        );
        assert!(r
            .markdown
            .contains("| uniform | 1.00 (1.00) | 0.00 (–) | 0.00 (–) | 0.00 (–) |"));
        let dir = tempfile::tempdir().unwrap();
        r.write(dir.path()).unwrap();
        assert!(dir.path().join("calibration.svg").exists());
        assert!(dir.path().join("spearman.svg").exists());
    }

    #[test]
    fn holdout_table_splits_first_appearances_by_the_runs_hold_out() {
        use crate::calibration::PromptRecord;
        use augur_train::grpo::selection::Holdout;
        let h = Holdout {
            fraction: 0.5,
            steps: 2,
            seed: 1,
        };
        let held: Vec<u32> = (0..100).filter(|&i| h.contains(i)).take(2).collect();
        let open: Vec<u32> = (0..100).filter(|&i| !h.contains(i)).take(2).collect();
        let (a, b, c, d) = (held[0], held[1], open[0], open[1]);
        let rec = |step, id, successes, predicted| PromptRecord {
            step,
            id,
            successes,
            predicted: Some(predicted),
        };
        let mut gps = run("gps", 0, &[0.1, 0.2, 0.3], 0.5);
        gps.holdout = Some(h);
        gps.rows[0].prompts = vec![rec(1, c, 2, 0.5), rec(1, d, 0, 0.1)];
        gps.rows[2].prompts = vec![rec(3, a, 1, 0.3), rec(3, b, 4, 0.8), rec(3, c, 4, 0.9)];
        let mut mopps = run("mopps", 0, &[0.1, 0.2, 0.3], 0.5);
        mopps.holdout = Some(h);
        mopps.rows[0].prompts = vec![rec(1, c, 2, 0.5), rec(1, d, 0, 0.5)];
        mopps.rows[2].prompts = vec![rec(3, a, 0, 0.5), rec(3, b, 4, 0.5)];
        let methods = ["gps".to_string(), "mopps".into()];
        let r = Report::new(&spec(&methods, 1, None), vec![gps, mopps]);
        // gps, held out (a, b): effective 1/2; Brier ((0.3−0.25)² + (0.8−1)²)/2 = 0.02125;
        // ρ over (0.3, 0.8) vs (0.25, 1) = 1. Others (c, d; c's repeat left out): effective
        // 1/2, Brier (0 + 0.1²)/2 = 0.005, ρ = 1.
        assert!(r.markdown.contains("first 2 steps"), "{}", r.markdown);
        assert!(
            r.markdown
                .contains("| gps | 2.0 | 0.50 | 0.021 | 1.00 | 2.0 | 0.50 | 0.005 | 1.00 |"),
            "{}",
            r.markdown
        );
        // mopps predicts its prior everywhere: Brier 0.25 on the held-out (0/4, 4/4), 0.125 on
        // the others (2/4, 0/4), and no ρ.
        assert!(
            r.markdown
                .contains("| mopps | 2.0 | 0.00 | 0.250 | – | 2.0 | 0.50 | 0.125 | – |"),
            "{}",
            r.markdown
        );
        // Runs without a hold-out get no such table.
        assert!(!report(None).markdown.contains("Held-out prompts"));
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
        assert_eq!(u.budget_to_target.unwrap().mean, 30.0);
        assert_eq!(u.accuracy_from, "train, last ¼ mean");
        // mopps seed 1 never reaches 0.2.
        assert_eq!((m.reached, m.with_target, m.budget_to_target), (1, 2, None));
        assert!(r.markdown.contains("not reached (1/2)"), "{}", r.markdown);
        assert!(r.markdown.contains("| mopps |"), "{}", r.markdown);
        assert!((m.effective_ratio.unwrap().mean - 0.75).abs() < 1e-12);
        assert_eq!(m.wall_s.unwrap().mean, 8.0);
    }

    #[test]
    fn a_given_target_is_used_and_compared_to_uniform() {
        let r = report(Some(0.15));
        let m = &r.summaries[1];
        assert_eq!(m.budget_to_target.unwrap().mean, 25.0);
        assert_eq!(m.ratio_vs_uniform, Some(1.25));
        assert!(r.markdown.contains("--target-accuracy"), "{}", r.markdown);
        let csv = r.runs_csv();
        assert_eq!(csv.lines().count(), 5);
        assert_eq!(steps_csv(&r.runs).lines().count(), 17);
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}
