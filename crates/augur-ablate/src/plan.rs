//! What a real ablation will run: one `augur grpo` run per sampler × seed, or one `augur sft`
//! run per selection method × seed, each with its own run folder and seeds. Everything is
//! resolved and validated here, so bad input (unknown method, zero seeds, unreadable config,
//! bad `--set`) fails before any run starts.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context};
use augur_sampler::Method;
use augur_train::grpo::GrpoConfig;
use augur_train::sft::config::SelectionMethod;
use augur_train::sft::SftConfig;

use crate::run::Mode;

/// Sampler names for messages: the trainer's `sampler.method` values. `uniform` is the
/// sampler method too (not "no `[sampler]` section"), so every run draws the same seeded
/// candidate pool per step and only the choice among candidates differs between samplers.
pub const SAMPLERS: &[&str] = &["uniform", "ds", "hr", "greso", "mopps", "dps", "gps"];

/// SFT batch-selection methods: `augur sft`'s `selection.method` values.
pub const SELECTIONS: &[&str] = &["uniform", "uds", "maxloss", "rho"];

/// Which trainer an ablation's config is for. A config with a `[train]` or `[selection]`
/// section is an `augur sft` config; anything else an `augur grpo` config.
pub fn mode_of(config: &Path) -> anyhow::Result<Mode> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("--config {}: cannot read it", config.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("--config {}", config.display()))?;
    Ok(
        match table.contains_key("train") || table.contains_key("selection") {
            true => Mode::Sft,
            false => Mode::Grpo,
        },
    )
}

/// The resolved config of one run, of either trainer.
#[derive(Debug)]
pub enum RunConfig {
    Grpo(Box<GrpoConfig>),
    Sft(Box<SftConfig>),
}

impl RunConfig {
    fn load(mode: Mode, path: &Path, overrides: &[String]) -> anyhow::Result<Self> {
        Ok(match mode {
            Mode::Sft => Self::Sft(Box::new(SftConfig::load(path, overrides)?)),
            Mode::Grpo | Mode::Simulated => {
                Self::Grpo(Box::new(GrpoConfig::load(path, overrides)?))
            }
        })
    }

    /// Parses a stored `config.toml` of the same trainer.
    pub fn parse_like(&self, text: &str) -> anyhow::Result<Self> {
        Ok(match self {
            Self::Grpo(_) => Self::Grpo(Box::new(GrpoConfig::from_toml_str(text, &[])?)),
            Self::Sft(_) => Self::Sft(Box::new(SftConfig::from_toml_str(text, &[])?)),
        })
    }

    pub fn mode(&self) -> Mode {
        match self {
            Self::Grpo(_) => Mode::Grpo,
            Self::Sft(_) => Mode::Sft,
        }
    }

    /// The `augur` subcommand that runs it.
    pub fn command(&self) -> &'static str {
        match self {
            Self::Grpo(_) => "grpo",
            Self::Sft(_) => "sft",
        }
    }

    pub fn steps(&self) -> u64 {
        match self {
            Self::Grpo(c) => c.algorithm.steps,
            Self::Sft(c) => c.train.steps,
        }
    }

    pub fn metrics_path(&self) -> PathBuf {
        match self {
            Self::Grpo(c) => c.metrics_path(),
            Self::Sft(c) => c.metrics_path(),
        }
    }

    /// The prompts a GRPO run holds out of its first steps' candidates (none for SFT).
    pub fn holdout(&self) -> Option<augur_train::grpo::selection::Holdout> {
        match self {
            Self::Grpo(c) => augur_train::grpo::selection::Holdout::of(c),
            Self::Sft(_) => None,
        }
    }

    /// Completions per prompt (GRPO; 0 for SFT, which has no groups).
    pub fn group_size(&self) -> u32 {
        match self {
            Self::Grpo(c) => c.rollout.group_size as u32,
            Self::Sft(_) => 0,
        }
    }

    /// The config as a TOML table without what may differ between two runs of the same
    /// settings: where it writes, how much it logs and how many steps it runs (more steps
    /// continue a run).
    pub fn settings(&self) -> anyhow::Result<toml::Table> {
        let text = match self {
            Self::Grpo(c) => {
                let mut c = GrpoConfig::clone(c);
                c.checkpoint = Default::default();
                c.logging = Default::default();
                c.algorithm.steps = 0;
                c.to_toml()?
            }
            Self::Sft(c) => {
                let mut c = c.clone();
                c.checkpoint = Default::default();
                c.logging = Default::default();
                c.train.steps = 0;
                c.to_toml()?
            }
        };
        Ok(toml::from_str(&text)?)
    }
}

/// One run of the ablation.
#[derive(Debug)]
pub struct RunPlan {
    /// Sampler or selection method name (lowercase), as in `--samplers`.
    pub sampler: String,
    /// Seed index k (0-based): every seed of the config is offset by k.
    pub seed: u64,
    /// Run folder, `<out>/runs/<method>-seed<k>`.
    pub dir: PathBuf,
    /// `--set` arguments of the child: the user's, then the ablation's own (which win).
    pub overrides: Vec<String>,
    /// The config the child will resolve, for step count, metrics path and checking a reused
    /// run folder.
    pub config: RunConfig,
}

impl RunPlan {
    /// Training steps of the run.
    pub fn steps(&self) -> u64 {
        self.config.steps()
    }

    /// `<method> seed <k>`, for messages.
    pub fn label(&self) -> String {
        format!("{} seed {}", self.sampler, self.seed)
    }
}

/// The whole ablation.
#[derive(Debug)]
pub struct Plan {
    pub mode: Mode,
    /// The config every run starts from.
    pub config_path: PathBuf,
    /// Method names in the requested order (lowercase, distinct).
    pub samplers: Vec<String>,
    /// Seeds per method.
    pub seeds: usize,
    /// Runs, method-major.
    pub runs: Vec<RunPlan>,
}

/// Checks `names` against `mode`'s methods and returns them lowercased, in order.
pub fn method_names(mode: Mode, names: &[String]) -> anyhow::Result<Vec<String>> {
    ensure!(!names.is_empty(), "--samplers: give at least one method");
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(names.len());
    for raw in names {
        let name = raw.trim().to_ascii_lowercase();
        let (known, list) = match mode {
            Mode::Sft => (
                toml::Value::String(name.clone())
                    .try_into::<SelectionMethod>()
                    .is_ok(),
                SELECTIONS,
            ),
            Mode::Grpo | Mode::Simulated => (name.parse::<Method>().is_ok(), SAMPLERS),
        };
        if !known {
            bail!(
                "--samplers: unknown {} method {raw:?} (known: {})",
                mode.key(),
                list.join(", ")
            );
        }
        ensure!(
            seen.insert(name.clone()),
            "--samplers: {name:?} is listed twice"
        );
        out.push(name);
    }
    Ok(out)
}

/// [`method_names`] for GRPO samplers.
pub fn sampler_names(names: &[String]) -> anyhow::Result<Vec<String>> {
    method_names(Mode::Grpo, names)
}

/// A TOML string literal of `p`, so `--set key=<path>` passes the path verbatim (a bare value
/// is parsed as TOML first).
fn toml_path(p: &Path) -> anyhow::Result<String> {
    let s = p
        .to_str()
        .with_context(|| format!("path {} is not valid UTF-8", p.display()))?;
    Ok(toml::Value::String(s.to_string()).to_string())
}

/// The ablation's own overrides of run (`method`, `k`): run folder, metrics file, seeds offset
/// by k from `base`'s, and the method. SFT runs also save a checkpoint at every evaluation, so
/// the held-out accuracy can be measured where the loss was.
fn run_overrides(
    base: &RunConfig,
    method: &str,
    k: u64,
    dir: &Path,
) -> anyhow::Result<Vec<String>> {
    let mut o = vec![
        format!("checkpoint.dir={}", toml_path(dir)?),
        format!("logging.metrics={}", toml_path(&dir.join("metrics.jsonl"))?),
    ];
    match base {
        RunConfig::Grpo(base) => {
            let sampler_seed = base.sampler.as_ref().map_or(0, |s| s.sampler.seed);
            o.extend([
                format!("data.seed={}", base.data.seed.wrapping_add(k)),
                format!("rollout.seed={}", base.rollout.seed.wrapping_add(k)),
                format!("lora.seed={}", base.lora.seed.wrapping_add(k)),
                format!("sampler.seed={}", sampler_seed.wrapping_add(k)),
                format!("sampler.method=\"{method}\""),
            ]);
        }
        RunConfig::Sft(base) => {
            o.extend([
                format!("data.seed={}", base.data.seed.wrapping_add(k)),
                format!("lora.seed={}", base.lora.seed.wrapping_add(k)),
                format!("selection.seed={}", base.selection.seed.wrapping_add(k)),
                format!("selection.method=\"{method}\""),
            ]);
            if let Some(every) = base.eval.as_ref().map(|e| e.every).filter(|&e| e > 0) {
                o.push(format!("checkpoint.every={every}"));
            }
        }
    }
    Ok(o)
}

impl Plan {
    /// Resolves every run's config from `config` + `sets` + the ablation's overrides; `config`
    /// decides the trainer ([`mode_of`]).
    pub fn new(
        config: &Path,
        samplers: &[String],
        seeds: usize,
        out: &Path,
        sets: &[String],
    ) -> anyhow::Result<Self> {
        ensure!(
            config.is_file(),
            "--config {}: no such file",
            config.display()
        );
        let mode = mode_of(config)?;
        let samplers = method_names(mode, samplers)?;
        ensure!(seeds >= 1, "--seeds must be at least 1 (got {seeds})");
        let base = RunConfig::load(mode, config, sets)
            .with_context(|| format!("--config {}", config.display()))?;
        let mut runs = Vec::with_capacity(samplers.len() * seeds);
        for sampler in &samplers {
            for k in 0..seeds as u64 {
                let dir = out.join("runs").join(format!("{sampler}-seed{k}"));
                let mut overrides = sets.to_vec();
                overrides.extend(run_overrides(&base, sampler, k, &dir)?);
                let config = RunConfig::load(mode, config, &overrides).with_context(|| {
                    format!("--config {} for {sampler} seed {k}", config.display())
                })?;
                runs.push(RunPlan {
                    sampler: sampler.clone(),
                    seed: k,
                    dir,
                    overrides,
                    config,
                });
            }
        }
        Ok(Self {
            mode,
            config_path: config.to_path_buf(),
            samplers,
            seeds,
            runs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_name_is_a_trainer_method() {
        for name in SAMPLERS {
            assert!(name.parse::<Method>().is_ok(), "{name}");
        }
    }

    #[test]
    fn names_are_checked_and_lowercased() {
        let ok = sampler_names(&["Uniform".into(), " mopps".into()]).unwrap();
        assert_eq!(ok, ["uniform", "mopps"]);
        let err = sampler_names(&["mopps".into(), "oracle".into()]).unwrap_err();
        assert!(err.to_string().contains("\"oracle\""), "{err}");
        let err = sampler_names(&["dps".into(), "DPS".into()]).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        assert!(sampler_names(&[]).is_err());
    }

    #[test]
    fn runs_get_their_own_dir_seeds_and_method() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.toml");
        std::fs::write(
            &cfg,
            "[model]\npath = \"m\"\n[data]\ntrain = \"t.jsonl\"\nseed = 10\n[sampler]\nmethod = \"mopps\"\nseed = 3\n",
        )
        .unwrap();
        let out = dir.path().join("out");
        let sets = ["rollout.group_size=4".to_string()];
        let plan = Plan::new(&cfg, &["uniform".into(), "ds".into()], 2, &out, &sets).unwrap();
        assert_eq!(plan.runs.len(), 4);
        let r = &plan.runs[3];
        assert_eq!((r.sampler.as_str(), r.seed), ("ds", 1));
        assert_eq!(r.dir, out.join("runs/ds-seed1"));
        let RunConfig::Grpo(c) = &r.config else {
            panic!("a GRPO config")
        };
        assert_eq!(c.checkpoint.dir, r.dir);
        assert_eq!(c.data.seed, 11);
        assert_eq!(c.rollout.seed, 1);
        assert_eq!(c.rollout.group_size, 4);
        let s = c.sampler.as_ref().unwrap();
        assert_eq!((s.sampler.method, s.sampler.seed), (Method::Ds, 4));
        let err = Plan::new(&cfg, &["uniform".into()], 0, &out, &[]).unwrap_err();
        assert!(err.to_string().contains("--seeds"), "{err}");
        let missing = dir.path().join("missing.toml");
        let err = Plan::new(&missing, &["uniform".into()], 1, &out, &[]).unwrap_err();
        assert!(format!("{err:#}").contains("missing.toml"), "{err:#}");
    }

    #[test]
    fn shipped_ablate_config_resolves_for_every_sampler() {
        let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/ablate-arith.toml");
        let names: Vec<String> = SAMPLERS.iter().map(|s| s.to_string()).collect();
        let plan = Plan::new(&cfg, &names, 1, Path::new("runs/x"), &[]).unwrap();
        assert_eq!(plan.runs.len(), SAMPLERS.len());
    }

    #[test]
    fn shipped_sft_ablate_config_is_an_sft_config_for_every_selection_method() {
        let cfg = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../configs/sft-ablate-gsm8k-smollm2.toml");
        let names: Vec<String> = SELECTIONS.iter().map(|s| s.to_string()).collect();
        let plan = Plan::new(&cfg, &names, 2, Path::new("runs/x"), &[]).unwrap();
        assert_eq!(plan.mode, Mode::Sft);
        assert_eq!(plan.runs.len(), 2 * SELECTIONS.len());
        let r = &plan.runs[7];
        assert_eq!((r.sampler.as_str(), r.seed), ("rho", 1));
        let RunConfig::Sft(c) = &r.config else {
            panic!("an SFT config")
        };
        assert_eq!(c.selection.method, SelectionMethod::Rho);
        assert_eq!((c.data.seed, c.selection.seed, c.lora.seed), (1, 1, 1));
        // A checkpoint at every evaluation, for the held-out accuracy.
        assert_eq!(c.checkpoint.every, c.eval.as_ref().unwrap().every);
        assert_eq!(c.checkpoint.dir, Path::new("runs/x/runs/rho-seed1"));
        let err = method_names(Mode::Sft, &["uniform".into(), "mopps".into()]).unwrap_err();
        assert!(
            err.to_string().contains("unknown sft method \"mopps\""),
            "{err}"
        );
    }
}
