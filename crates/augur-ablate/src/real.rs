//! A real ablation, top to bottom: plan one run per method × seed ([`crate::plan`]), run each as
//! an `augur grpo` / `augur sft` child process resumably ([`crate::exec`]), read what they
//! logged (SFT: plus the held-out accuracy of their checkpoints, [`crate::accuracy`]), and
//! report.

use std::path::{Path, PathBuf};

use crate::accuracy::{self, AccuracySpec, Cache};
use crate::exec::{self, RunState};
use crate::plan::{Plan, RunConfig, RunPlan};
use crate::report::{Report, ReportSpec};
use crate::run::{Run, StepRow};

/// What to ablate, as `augur ablate --config ...` takes it.
pub struct RealAblation {
    /// The training config every run starts from.
    pub config: PathBuf,
    /// Methods in table order (sampler names).
    pub methods: Vec<String>,
    pub seeds: usize,
    /// Output folder: `runs/<method>-seed<k>/`, CSVs, Markdown table and plots.
    pub out: PathBuf,
    /// `--set` overrides applied to every run.
    pub sets: Vec<String>,
    /// Accuracy whose budget-to-reach is compared (default: uniform's final accuracy per seed).
    pub target_accuracy: Option<f64>,
    /// The `augur` binary the runs are started with (the caller's own executable).
    pub augur: PathBuf,
    /// SFT: how the held-out accuracy of each checkpoint is measured (`None`: not measured).
    pub accuracy: Option<AccuracySpec>,
}

impl RealAblation {
    /// Runs what is missing, then writes the report into `out` and returns it.
    pub fn run(&self) -> anyhow::Result<Report> {
        let plan = Plan::new(
            &self.config,
            &self.methods,
            self.seeds,
            &self.out,
            &self.sets,
        )?;
        if let (Some(RunConfig::Sft(cfg)), Some(_)) =
            (plan.runs.first().map(|r| &r.config), &self.accuracy)
        {
            anyhow::ensure!(
                cfg.eval.is_some(),
                "--config {}: the held-out accuracy needs an [eval] section (its file holds the \
                 problems), or pass --eval-prompts 0",
                self.config.display()
            );
        }
        run_all(&self.augur, &plan)?;
        let mut runs = Vec::with_capacity(plan.runs.len());
        for p in &plan.runs {
            let mut run = exec::read_run(p)?;
            if let (RunConfig::Sft(cfg), Some(spec)) = (&p.config, &self.accuracy) {
                self.add_accuracy(p, cfg, spec, &mut run)?;
            }
            runs.push(run);
        }
        let title = format!("`{}`", plan.config_path.display());
        let spec = ReportSpec {
            title: &title,
            mode: plan.mode,
            methods: &plan.samplers,
            seeds: plan.seeds,
            target: self.target_accuracy,
            warmup: 0,
        };
        let report = Report::new(&spec, runs);
        report.write(&self.out)?;
        Ok(report)
    }

    /// Puts the held-out accuracy of every checkpoint of `run` on its step's row, and that of
    /// the starting model on step 0 (cached in `<out>/accuracy/`).
    fn add_accuracy(
        &self,
        plan: &RunPlan,
        cfg: &augur_train::sft::SftConfig,
        spec: &AccuracySpec,
        run: &mut Run,
    ) -> anyhow::Result<()> {
        let folder = self.out.join("accuracy");
        let mut points = vec![(
            0,
            Cache::open(folder.join("start.jsonl"))?
                .get(0, None, spec, || accuracy::measure(cfg, None, spec))?,
        )];
        let mut cache =
            Cache::open(folder.join(format!("{}-seed{}.jsonl", plan.sampler, plan.seed)))?;
        for (step, dir) in exec::checkpoints(&plan.dir, plan.steps())? {
            let acc = cache.get(step, Some(&dir), spec, || {
                eprintln!("ablate: held-out accuracy of {}", dir.display());
                accuracy::measure(cfg, Some(&dir), spec)
            })?;
            points.push((step, acc));
        }
        for (step, acc) in points {
            match run.rows.iter_mut().find(|r| r.step == step) {
                Some(row) => row.eval_accuracy = Some(acc),
                None => {
                    let at = run.rows.partition_point(|r| r.step < step);
                    run.rows.insert(
                        at,
                        StepRow {
                            step,
                            samples: Some(0),
                            eval_accuracy: Some(acc),
                            ..Default::default()
                        },
                    );
                }
            }
        }
        Ok(())
    }
}

/// Every planned run in turn, skipping finished ones and resuming interrupted ones. Every run
/// folder is inspected first, so a folder that cannot be reused fails before any run starts.
fn run_all(augur: &Path, plan: &Plan) -> anyhow::Result<()> {
    let states = plan
        .runs
        .iter()
        .map(exec::run_state)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let n = plan.runs.len();
    for (i, (run, state)) in plan.runs.iter().zip(&states).enumerate() {
        let what = match state {
            RunState::Complete => {
                eprintln!(
                    "ablate [{}/{n}] skip {}: {} already has all {} steps",
                    i + 1,
                    run.label(),
                    run.dir.display(),
                    run.steps()
                );
                continue;
            }
            RunState::Resume(ckpt) => format!("resuming from {}", ckpt.display()),
            RunState::Fresh => format!("starting in {}", run.dir.display()),
        };
        eprintln!("ablate [{}/{n}] {}: {what}", i + 1, run.label());
        exec::execute(augur, run, &plan.config_path, state)?;
    }
    Ok(())
}
