//! Serde configuration (TOML/JSON) for building samplers: a named method preset, optionally
//! overridden by an explicit predictor and/or acquisition so any pair can be tried.
//!
//! ```toml
//! method = "mopps"          # uniform | ds | hr | greso | mopps | dps | gps
//! seed = 0
//! group_size = 8
//! [mopps]
//! lambda = 1.0
//! # override the rule only:
//! [acquisition]
//! kind = "risk"
//! kappa = 1.0
//! ```
//!
//! GPS (`method = "gps"`) reads its `[gps]` section ([`GpsConfig`]): network size, AdamW
//! settings, replay buffer, and the λ_div / window of its diversity-aware acquisition. Its
//! predictor and acquisition share one embedding table, filled by
//! [`Sampler::set_embeddings`].

use crate::acquisition::{
    Acquisition, Band, Cvar, DiverseGreedy, Greso, GresoConfig, HistoryReject, PointEstimate, Risk,
    Target, TopPartial, TopVariance, Uniform,
};
use crate::ds::DsConfig;
use crate::embedding::{EmbeddingTable, SharedEmbeddings};
use crate::error::{Result, SamplerError};
use crate::predictor::{
    BetaConfig, BetaPredictor, DiversityMode, DpsConfig, DpsPredictor, GpsConfig, GpsPredictor,
    NonePredictor, Predictor,
};
use crate::sampler::Sampler;
use serde::{Deserialize, Serialize};

/// Named sampling methods of issue 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Uniform without replacement.
    #[default]
    Uniform,
    /// DAPO dynamic sampling (evaluate-then-filter); driven by [`crate::DynamicSampling`].
    Ds,
    /// History rejection of last-all-correct prompts.
    Hr,
    /// GRESO probabilistic history filtering.
    Greso,
    /// MoPPS: Beta posteriors + Thompson sample closest to γ*.
    Mopps,
    /// DPS: HMM solving-state model + top P(partial).
    Dps,
    /// GPS: neural predictor over prompt embeddings + greedy utility/diversity batches.
    Gps,
}

impl std::str::FromStr for Method {
    type Err = SamplerError;
    fn from_str(s: &str) -> Result<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase()))
            .map_err(|_| SamplerError::InvalidConfig(format!("unknown sampler method {s:?}")))
    }
}

/// An explicit predictor choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PredictorConfig {
    /// No prediction (p = 0.5 everywhere).
    None,
    /// MoPPS Beta-Bernoulli.
    Beta(BetaConfig),
    /// DPS hidden-Markov solving states.
    Dps(DpsConfig),
    /// GPS neural predictor over prompt embeddings.
    Gps(GpsConfig),
}

/// An explicit acquisition rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AcquisitionConfig {
    /// Uniform without replacement.
    Uniform,
    /// Closest to γ*.
    Target {
        /// Target success rate.
        #[serde(default = "half")]
        gamma: f32,
        /// Mean or Thompson sample.
        #[serde(default)]
        estimate: PointEstimate,
    },
    /// Random inside [low, high].
    Band {
        /// Lower edge.
        low: f32,
        /// Upper edge.
        high: f32,
        /// Mean or Thompson sample.
        #[serde(default)]
        estimate: PointEstimate,
    },
    /// Top p(1−p).
    Variance {
        /// Mean or Thompson sample.
        #[serde(default)]
        estimate: PointEstimate,
    },
    /// Top P(0 < s < k).
    Partial,
    /// Uniform within the hardest α-fraction.
    Cvar {
        /// Tail fraction.
        alpha: f32,
    },
    /// Top mean + κ·std of failure rate.
    Risk {
        /// Uncertainty weight.
        #[serde(default = "one")]
        kappa: f32,
    },
    /// HR history filter.
    Hr,
    /// GRESO history filter.
    Greso(GresoConfig),
    /// Greedy −(γ̂−γ*)² + λ_div·diversity over prompt embeddings (GPS).
    Diverse {
        /// Target success rate.
        #[serde(default = "half")]
        gamma: f32,
        /// Weight of the diversity term.
        lambda_div: f32,
        /// Min or mean cosine distance.
        #[serde(default)]
        diversity: DiversityMode,
        /// Recent batches used as anchors.
        #[serde(default)]
        window: usize,
    },
}

fn half() -> f32 {
    0.5
}
fn one() -> f32 {
    1.0
}

/// Full sampler configuration, loadable from TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplerConfig {
    /// Method preset.
    pub method: Method,
    /// Seed of the sampler's RNG (everything is deterministic given it).
    pub seed: u64,
    /// Rollouts per prompt k, for P(partial) before the first outcome arrives.
    pub group_size: u32,
    /// Target γ* of MoPPS.
    pub gamma: f32,
    /// MoPPS predictor settings.
    pub mopps: BetaConfig,
    /// DPS predictor settings.
    pub dps: DpsConfig,
    /// GPS predictor and acquisition settings.
    pub gps: GpsConfig,
    /// GRESO settings.
    pub greso: GresoConfig,
    /// DS settings.
    pub ds: DsConfig,
    /// Overrides the method's predictor.
    pub predictor: Option<PredictorConfig>,
    /// Overrides the method's acquisition rule.
    pub acquisition: Option<AcquisitionConfig>,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            method: Method::Uniform,
            seed: 0,
            group_size: 8,
            gamma: 0.5,
            mopps: BetaConfig::default(),
            dps: DpsConfig::default(),
            gps: GpsConfig::default(),
            greso: GresoConfig::default(),
            ds: DsConfig::default(),
            predictor: None,
            acquisition: None,
        }
    }
}

impl SamplerConfig {
    /// Parses TOML `text` (empty = all defaults), then applies `overrides` (`key.path=value`,
    /// value in TOML syntax, bare words as strings; e.g. `dps.lambda=0.5`, `method=dps`), as
    /// `augur grpo --set` does. Unknown keys are errors naming the key.
    pub fn from_toml_str(text: &str, overrides: &[String]) -> Result<Self> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| SamplerError::InvalidConfig(e.to_string()))?;
        for o in overrides {
            apply_override(&mut table, o).map_err(SamplerError::InvalidConfig)?;
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| SamplerError::InvalidConfig(e.to_string()))
    }

    /// The default config of a method.
    pub fn for_method(method: Method) -> Self {
        SamplerConfig {
            method,
            ..Default::default()
        }
    }

    /// Predictor after applying the override.
    pub fn predictor_config(&self) -> PredictorConfig {
        self.predictor.clone().unwrap_or(match self.method {
            Method::Mopps => PredictorConfig::Beta(self.mopps.clone()),
            Method::Dps => PredictorConfig::Dps(self.dps.clone()),
            Method::Gps => PredictorConfig::Gps(self.gps.clone()),
            _ => PredictorConfig::None,
        })
    }

    /// Acquisition after applying the override.
    pub fn acquisition_config(&self) -> AcquisitionConfig {
        self.acquisition.clone().unwrap_or(match self.method {
            Method::Mopps => AcquisitionConfig::Target {
                gamma: self.gamma,
                estimate: PointEstimate::Sample,
            },
            Method::Dps => AcquisitionConfig::Partial,
            Method::Gps => AcquisitionConfig::Diverse {
                gamma: self.gamma,
                lambda_div: self.gps.lambda_div,
                diversity: self.gps.diversity,
                window: self.gps.window,
            },
            Method::Hr => AcquisitionConfig::Hr,
            Method::Greso => AcquisitionConfig::Greso(self.greso.clone()),
            Method::Uniform | Method::Ds => AcquisitionConfig::Uniform,
        })
    }

    /// Builds the select/observe sampler. DS is an evaluate-then-filter loop, not a pre-rollout
    /// choice, so it is built with [`crate::DynamicSampling::new`] instead.
    pub fn build(&self) -> Result<Sampler> {
        if self.method == Method::Ds {
            return Err(SamplerError::InvalidConfig(
                "method ds needs a rollout callback: use DynamicSampling".into(),
            ));
        }
        // One embedding table, shared by every part that reads embeddings.
        let pcfg = self.predictor_config();
        let dim = match &pcfg {
            PredictorConfig::Gps(g) => g.embedding_dim,
            _ => self.gps.embedding_dim,
        };
        let emb = EmbeddingTable::shared(dim);
        Ok(Sampler::new(
            predictor_with(&pcfg, &emb, self.seed)?,
            acquisition_with(&self.acquisition_config(), &emb)?,
            self.seed,
            self.group_size,
        ))
    }
}

/// Applies one `--set` override `a.b.c=value` to a parsed TOML config table: the value in TOML
/// syntax (bare words become strings), intermediate tables created. Shared by `augur sampler`
/// and `augur grpo`/`sft`, so `--set` means the same everywhere; whether the key exists is
/// checked when the table is deserialised. The error names the override.
pub fn apply_override(table: &mut toml::Table, o: &str) -> std::result::Result<(), String> {
    let bad = |why: String| format!("override `{o}`: {why}");
    let (key, raw) = o
        .split_once('=')
        .ok_or_else(|| bad("not key=value".into()))?;
    let (key, raw) = (key.trim(), raw.trim());
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").expect("parsed key"),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(bad("empty key segment".into()));
    }
    let mut t = table;
    for p in &parts[..parts.len() - 1] {
        let entry = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry
            .as_table_mut()
            .ok_or_else(|| bad(format!("`{p}` is not a table")))?;
    }
    t.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

fn predictor_with(
    cfg: &PredictorConfig,
    emb: &SharedEmbeddings,
    seed: u64,
) -> Result<Box<dyn Predictor>> {
    Ok(match cfg {
        PredictorConfig::Gps(c) => Box::new(GpsPredictor::new(c.clone(), emb.clone(), seed)?),
        PredictorConfig::None => Box::new(NonePredictor),
        PredictorConfig::Beta(c) => Box::new(BetaPredictor::new(c.clone())?),
        PredictorConfig::Dps(c) => Box::new(DpsPredictor::new(c.clone())?),
    })
}

fn acquisition_with(
    cfg: &AcquisitionConfig,
    emb: &SharedEmbeddings,
) -> Result<Box<dyn Acquisition>> {
    Ok(match cfg.clone() {
        AcquisitionConfig::Diverse {
            gamma,
            lambda_div,
            diversity,
            window,
        } => Box::new(DiverseGreedy::new(
            gamma,
            lambda_div,
            diversity,
            window,
            emb.clone(),
        )?),
        AcquisitionConfig::Uniform => Box::new(Uniform),
        AcquisitionConfig::Target { gamma, estimate } => Box::new(Target { gamma, estimate }),
        AcquisitionConfig::Band {
            low,
            high,
            estimate,
        } => {
            if low > high {
                return Err(SamplerError::InvalidConfig(format!(
                    "band low {low} > high {high}"
                )));
            }
            Box::new(Band {
                low,
                high,
                estimate,
            })
        }
        AcquisitionConfig::Variance { estimate } => Box::new(TopVariance { estimate }),
        AcquisitionConfig::Partial => Box::new(TopPartial),
        AcquisitionConfig::Cvar { alpha } => {
            if !(alpha > 0.0 && alpha <= 1.0) {
                return Err(SamplerError::InvalidConfig(format!(
                    "cvar alpha {alpha} not in (0, 1]"
                )));
            }
            Box::new(Cvar { alpha })
        }
        AcquisitionConfig::Risk { kappa } => Box::new(Risk { kappa }),
        AcquisitionConfig::Hr => Box::new(HistoryReject::default()),
        AcquisitionConfig::Greso(c) => Box::new(Greso::new(c)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_over_the_file_and_name_unknown_keys() {
        let sets = [
            "method=dps".to_string(),
            "dps.lambda=0.5".into(),
            "seed=7".into(),
        ];
        let c = SamplerConfig::from_toml_str("method = \"mopps\"\ngamma = 0.4\n", &sets).unwrap();
        assert_eq!(c.method, Method::Dps);
        assert_eq!(c.dps.lambda, 0.5);
        assert_eq!(c.seed, 7);
        assert_eq!(c.gamma, 0.4);
        let e = SamplerConfig::from_toml_str("", &["dps.lamda=0.5".into()]).unwrap_err();
        assert!(e.to_string().contains("lamda"), "{e}");
        let e = SamplerConfig::from_toml_str("", &["seed".into()]).unwrap_err();
        assert!(e.to_string().contains("key=value"), "{e}");
        let e = SamplerConfig::from_toml_str("", &["gamma.x=1".into()]).unwrap_err();
        assert!(e.to_string().contains("gamma"), "{e}");
    }
}
