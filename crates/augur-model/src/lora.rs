//! LoRA configuration and adapter bookkeeping: which projections get adapters,
//! their rank/alpha, and the PEFT names of the trainable tensors.

use candle_core::Var;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::linear::{Adapter, LoraLinear};
use crate::model::DecoderModel;

/// A projection that can carry an adapter, named as in HF/PEFT `target_modules`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    QProj,
    KProj,
    VProj,
    OProj,
    GateProj,
    UpProj,
    DownProj,
}

impl Target {
    pub const ALL: [Target; 7] = [
        Target::QProj,
        Target::KProj,
        Target::VProj,
        Target::OProj,
        Target::GateProj,
        Target::UpProj,
        Target::DownProj,
    ];

    /// PEFT's module name (`q_proj`, ...).
    pub fn module_name(self) -> &'static str {
        match self {
            Target::QProj => "q_proj",
            Target::KProj => "k_proj",
            Target::VProj => "v_proj",
            Target::OProj => "o_proj",
            Target::GateProj => "gate_proj",
            Target::UpProj => "up_proj",
            Target::DownProj => "down_proj",
        }
    }

    /// The HF path of the module below `model.layers.{i}`.
    pub fn hf_path(self) -> &'static str {
        match self {
            Target::QProj => "self_attn.q_proj",
            Target::KProj => "self_attn.k_proj",
            Target::VProj => "self_attn.v_proj",
            Target::OProj => "self_attn.o_proj",
            Target::GateProj => "mlp.gate_proj",
            Target::UpProj => "mlp.up_proj",
            Target::DownProj => "mlp.down_proj",
        }
    }

    /// Parses `q`, `q_proj`, ... (short and PEFT names).
    pub fn parse(s: &str) -> Result<Target> {
        let s = s.trim();
        Target::ALL
            .into_iter()
            .find(|t| t.module_name() == s || t.module_name().trim_end_matches("_proj") == s)
            .ok_or_else(|| {
                ModelError::Input(format!(
                    "unknown LoRA target `{s}` (use q,k,v,o,gate,up,down)"
                ))
            })
    }
}

/// LoRA hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank r of the update.
    pub rank: usize,
    /// Scaling numerator: the update is multiplied by `alpha / rank`.
    pub alpha: f64,
    /// Projections that get adapters.
    pub targets: Vec<Target>,
    /// Seed of the A-matrix initialisation.
    #[serde(default)]
    pub seed: u64,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: 16,
            alpha: 32.0,
            targets: Target::ALL.to_vec(),
            seed: 0,
        }
    }
}

impl DecoderModel {
    /// Visits every adaptable projection with its layer index and target.
    pub(crate) fn projections_mut(
        &mut self,
    ) -> impl Iterator<Item = (usize, Target, &mut LoraLinear)> {
        self.blocks.iter_mut().enumerate().flat_map(|(i, b)| {
            let a = &mut b.attn;
            let m = &mut b.mlp;
            [
                (Target::QProj, &mut a.q),
                (Target::KProj, &mut a.k),
                (Target::VProj, &mut a.v),
                (Target::OProj, &mut a.o),
                (Target::GateProj, &mut m.gate),
                (Target::UpProj, &mut m.up),
                (Target::DownProj, &mut m.down),
            ]
            .into_iter()
            .map(move |(t, l)| (i, t, l))
        })
    }

    pub(crate) fn projections(&self) -> impl Iterator<Item = (usize, Target, &LoraLinear)> {
        self.blocks.iter().enumerate().flat_map(|(i, b)| {
            let a = &b.attn;
            let m = &b.mlp;
            [
                (Target::QProj, &a.q),
                (Target::KProj, &a.k),
                (Target::VProj, &a.v),
                (Target::OProj, &a.o),
                (Target::GateProj, &m.gate),
                (Target::UpProj, &m.up),
                (Target::DownProj, &m.down),
            ]
            .into_iter()
            .map(move |(t, l)| (i, t, l))
        })
    }

    /// Adds fresh adapters (B = 0, so outputs are unchanged) to the configured projections.
    pub fn attach_lora(&mut self, cfg: &LoraConfig) -> Result<()> {
        if cfg.rank == 0 {
            return Err(ModelError::Input("lora.rank must be at least 1".into()));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
        let (dtype, device) = (self.dtype(), self.device().clone());
        for (_, target, linear) in self.projections_mut() {
            if cfg.targets.contains(&target) {
                linear.adapter = Some(Adapter::init(
                    linear.in_features,
                    linear.out_features,
                    cfg.rank,
                    cfg.alpha,
                    dtype,
                    &device,
                    &mut rng,
                )?);
            }
        }
        Ok(())
    }

    /// Trainable tensors with their PEFT names
    /// (`base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight`), in a stable order.
    pub fn lora_vars(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        for (i, target, linear) in self.projections() {
            if let Some(ad) = &linear.adapter {
                let p = format!("base_model.model.model.layers.{i}.{}", target.hf_path());
                out.push((format!("{p}.lora_A.weight"), ad.a.clone()));
                out.push((format!("{p}.lora_B.weight"), ad.b.clone()));
            }
        }
        out
    }

    /// Number of frozen base parameters.
    pub fn base_param_count(&self) -> usize {
        let norms: usize = self
            .blocks
            .iter()
            .map(|b| b.attn_norm.elem_count() + b.mlp_norm.elem_count())
            .sum();
        let qk: usize = self
            .blocks
            .iter()
            .map(|b| {
                b.attn.q_norm.as_ref().map_or(0, |t| t.elem_count())
                    + b.attn.k_norm.as_ref().map_or(0, |t| t.elem_count())
            })
            .sum();
        let linears: usize = self
            .projections()
            .map(|(_, _, l)| l.base_param_count())
            .sum();
        let head = if self.cfg.tie_word_embeddings {
            0
        } else {
            self.lm_head.base_param_count()
        };
        self.embed.elem_count() + norms + qk + linears + self.norm.elem_count() + head
    }

    /// Number of trainable adapter parameters.
    pub fn lora_param_count(&self) -> usize {
        self.lora_vars().iter().map(|(_, v)| v.elem_count()).sum()
    }
}
