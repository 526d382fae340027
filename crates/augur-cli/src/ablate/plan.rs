//! What a real ablation will run: one `augur grpo` run per sampler × seed, each with its own
//! run folder and seeds. Everything is resolved and validated here, so bad input (unknown
//! sampler, zero seeds, unreadable config, bad `--set`) fails before any run starts.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context};
use augur_sampler::Method;
use augur_train::grpo::GrpoConfig;

/// Sampler names for messages: the trainer's `sampler.method` values. `uniform` is the
/// sampler method too (not "no `[sampler]` section"), so every run draws the same seeded
/// candidate pool per step and only the choice among candidates differs between samplers.
pub const SAMPLERS: &[&str] = &["uniform", "ds", "hr", "greso", "mopps", "dps", "gps"];

/// One `augur grpo` run of the ablation.
#[derive(Debug)]
pub struct RunPlan {
    /// Sampler name (lowercase), as in `--samplers`.
    pub sampler: String,
    /// Seed index k (0-based): every seed of the config is offset by k.
    pub seed: u64,
    /// Run folder, `<out>/runs/<sampler>-seed<k>`.
    pub dir: PathBuf,
    /// `--set` arguments of the child: the user's, then the ablation's own (which win).
    pub overrides: Vec<String>,
    /// The config the child will resolve, for step count, metrics path and checking a reused
    /// run folder.
    pub config: GrpoConfig,
}

impl RunPlan {
    /// Training steps of the run.
    pub fn steps(&self) -> u64 {
        self.config.algorithm.steps
    }

    /// `<sampler> seed <k>`, for messages.
    pub fn label(&self) -> String {
        format!("{} seed {}", self.sampler, self.seed)
    }
}

/// The whole ablation.
#[derive(Debug)]
pub struct Plan {
    /// The GRPO config every run starts from.
    pub config_path: PathBuf,
    /// Sampler names in the requested order (lowercase, distinct).
    pub samplers: Vec<String>,
    /// Seeds per sampler.
    pub seeds: usize,
    /// Runs, sampler-major.
    pub runs: Vec<RunPlan>,
}

/// Checks `names` and returns them lowercased, in order.
pub fn sampler_names(names: &[String]) -> anyhow::Result<Vec<String>> {
    ensure!(!names.is_empty(), "--samplers: give at least one sampler");
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(names.len());
    for raw in names {
        let name = raw.trim().to_ascii_lowercase();
        if name.parse::<Method>().is_err() {
            bail!(
                "--samplers: unknown sampler {raw:?} (known: {})",
                SAMPLERS.join(", ")
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

/// A TOML string literal of `p`, so `--set key=<path>` passes the path verbatim (a bare value
/// is parsed as TOML first).
fn toml_path(p: &Path) -> anyhow::Result<String> {
    let s = p
        .to_str()
        .with_context(|| format!("path {} is not valid UTF-8", p.display()))?;
    Ok(toml::Value::String(s.to_string()).to_string())
}

/// The ablation's own overrides of run (`sampler`, `k`): run folder, metrics file, seeds offset
/// by k from `base`'s, and the sampler method.
fn run_overrides(
    base: &GrpoConfig,
    sampler: &str,
    k: u64,
    dir: &Path,
) -> anyhow::Result<Vec<String>> {
    let sampler_seed = base.sampler.as_ref().map_or(0, |s| s.sampler.seed);
    Ok(vec![
        format!("checkpoint.dir={}", toml_path(dir)?),
        format!("logging.metrics={}", toml_path(&dir.join("metrics.jsonl"))?),
        format!("data.seed={}", base.data.seed.wrapping_add(k)),
        format!("rollout.seed={}", base.rollout.seed.wrapping_add(k)),
        format!("lora.seed={}", base.lora.seed.wrapping_add(k)),
        format!("sampler.seed={}", sampler_seed.wrapping_add(k)),
        format!("sampler.method=\"{sampler}\""),
    ])
}

impl Plan {
    /// Resolves every run's config from `config` + `sets` + the ablation's overrides.
    pub fn new(
        config: &Path,
        samplers: &[String],
        seeds: usize,
        out: &Path,
        sets: &[String],
    ) -> anyhow::Result<Self> {
        let samplers = sampler_names(samplers)?;
        ensure!(seeds >= 1, "--seeds must be at least 1 (got {seeds})");
        ensure!(
            config.is_file(),
            "--config {}: no such file",
            config.display()
        );
        let base = GrpoConfig::load(config, sets)
            .with_context(|| format!("--config {}", config.display()))?;
        let mut runs = Vec::with_capacity(samplers.len() * seeds);
        for sampler in &samplers {
            for k in 0..seeds as u64 {
                let dir = out.join("runs").join(format!("{sampler}-seed{k}"));
                let mut overrides = sets.to_vec();
                overrides.extend(run_overrides(&base, sampler, k, &dir)?);
                let config = GrpoConfig::load(config, &overrides).with_context(|| {
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
        assert_eq!(r.config.checkpoint.dir, r.dir);
        assert_eq!(r.config.data.seed, 11);
        assert_eq!(r.config.rollout.seed, 1);
        assert_eq!(r.config.rollout.group_size, 4);
        let s = r.config.sampler.as_ref().unwrap();
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
}
