//! Architecture hyper-parameters, read from an HF `config.json` or from GGUF metadata.
//!
//! One config type covers the three supported families because they differ only in
//! a few switches: Qwen2 adds q/k/v biases, Qwen3 adds per-head q/k RMSNorm and an
//! explicit `head_dim`, Llama (SmolLM2) has neither.

use std::path::Path;

use serde_json::Value;

use crate::error::{ModelError, Result};

/// The decoder family, which decides the per-layer switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
}

impl Arch {
    /// Parses `model_type` (`llama`, `qwen2`, `qwen3`) or an `architectures` entry.
    pub fn parse(name: &str) -> Option<Arch> {
        match name {
            "llama" | "LlamaForCausalLM" | "mistral" | "MistralForCausalLM" => Some(Arch::Llama),
            "qwen2" | "Qwen2ForCausalLM" => Some(Arch::Qwen2),
            "qwen3" | "Qwen3ForCausalLM" => Some(Arch::Qwen3),
            _ => None,
        }
    }

    /// The lower-case family name used by HF `model_type` and GGUF `general.architecture`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
        }
    }
}

/// Hyper-parameters of a decoder-only transformer.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Whether q/k/v projections carry a bias (Qwen2 always, Llama when `attention_bias`).
    pub qkv_bias: bool,
    /// Whether q and k get a per-head RMSNorm before RoPE (Qwen3).
    pub qk_norm: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

impl ModelConfig {
    /// Reads an HF `config.json`.
    pub fn from_hf_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let json: Value = serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_hf_json(&json, path)
    }

    /// Builds the config from parsed `config.json`; `path` only labels errors.
    pub fn from_hf_json(json: &Value, path: &Path) -> Result<Self> {
        let arch_name = json
            .get("model_type")
            .and_then(Value::as_str)
            .or_else(|| {
                json.get("architectures")
                    .and_then(|a| a.get(0))
                    .and_then(Value::as_str)
            })
            .ok_or_else(|| ModelError::field(path, "model_type", "missing"))?;
        let arch = Arch::parse(arch_name).ok_or_else(|| ModelError::UnsupportedArch {
            path: path.to_path_buf(),
            arch: arch_name.to_string(),
        })?;
        let usize_field = |name: &str| -> Result<usize> {
            let v = json
                .get(name)
                .ok_or_else(|| ModelError::field(path, name, "missing"))?;
            v.as_u64()
                .filter(|&n| n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| {
                    ModelError::field(path, name, format!("expected a positive integer, got {v}"))
                })
        };
        let f64_field = |name: &str, default: f64| -> Result<f64> {
            match json.get(name) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v.as_f64().filter(|x| *x > 0.0).ok_or_else(|| {
                    ModelError::field(path, name, format!("expected a positive number, got {v}"))
                }),
            }
        };
        for key in ["rope_scaling", "rope_parameters"] {
            let kind = json
                .get(key)
                .and_then(|r| r.get("rope_type").or_else(|| r.get("type")))
                .and_then(Value::as_str);
            if let Some(kind) = kind.filter(|k| *k != "default") {
                return Err(ModelError::field(
                    path,
                    key,
                    format!("RoPE scaling `{kind}` is not supported"),
                ));
            }
        }
        let hidden_size = usize_field("hidden_size")?;
        let num_heads = usize_field("num_attention_heads")?;
        let num_kv_heads = match json.get("num_key_value_heads") {
            None | Some(Value::Null) => num_heads,
            Some(_) => usize_field("num_key_value_heads")?,
        };
        let head_dim = match json.get("head_dim") {
            None | Some(Value::Null) => hidden_size / num_heads,
            Some(_) => usize_field("head_dim")?,
        };
        let cfg = ModelConfig {
            arch,
            vocab_size: usize_field("vocab_size")?,
            hidden_size,
            intermediate_size: usize_field("intermediate_size")?,
            num_layers: usize_field("num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: f64_field("rms_norm_eps", 1e-6)?,
            rope_theta: match json
                .get("rope_parameters")
                .and_then(|r| r.get("rope_theta"))
            {
                // transformers >= 5 nests RoPE settings under `rope_parameters`.
                Some(v) => v.as_f64().filter(|x| *x > 0.0).ok_or_else(|| {
                    ModelError::field(
                        path,
                        "rope_parameters.rope_theta",
                        format!("expected a positive number, got {v}"),
                    )
                })?,
                None => f64_field("rope_theta", 10_000.0)?,
            },
            max_position_embeddings: usize_field("max_position_embeddings").unwrap_or(4096),
            tie_word_embeddings: json
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            qkv_bias: match arch {
                Arch::Qwen2 => true,
                Arch::Qwen3 => false,
                Arch::Llama => json
                    .get("attention_bias")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            },
            qk_norm: arch == Arch::Qwen3,
            bos_token_id: json
                .get("bos_token_id")
                .and_then(Value::as_u64)
                .map(|v| v as u32),
            eos_token_ids: token_id_list(json.get("eos_token_id")),
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Checks the relations between fields that the forward pass relies on.
    pub fn validate(&self, path: &Path) -> Result<()> {
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(ModelError::field(
                path,
                "num_key_value_heads",
                format!(
                    "{} does not divide num_attention_heads {}",
                    self.num_kv_heads, self.num_heads
                ),
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(ModelError::field(
                path,
                "head_dim",
                format!("{} must be even for RoPE", self.head_dim),
            ));
        }
        Ok(())
    }

    /// Number of query heads that share one key/value head (GQA).
    pub fn kv_groups(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }
}

/// Reads `eos_token_id`, which HF stores as either an integer or a list.
pub(crate) fn token_id_list(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_u64)
            .map(|n| n as u32)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({"model_type": "qwen2", "vocab_size": 10, "hidden_size": 8,
               "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
               "num_key_value_heads": 1, "eos_token_id": [3, 4]})
    }

    #[test]
    fn parses_qwen2_defaults() {
        let cfg = ModelConfig::from_hf_json(&base(), Path::new("c.json")).unwrap();
        assert_eq!(cfg.arch, Arch::Qwen2);
        assert!(cfg.qkv_bias && !cfg.qk_norm);
        assert_eq!(cfg.head_dim, 4);
        assert_eq!(cfg.eos_token_ids, vec![3, 4]);
    }

    #[test]
    fn errors_name_file_and_field() {
        let mut j = base();
        j.as_object_mut().unwrap().remove("hidden_size");
        let err = ModelConfig::from_hf_json(&j, Path::new("m/config.json")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "m/config.json: field `hidden_size`: missing"
        );
        let mut j = base();
        j["model_type"] = json!("gpt_neox");
        let err = ModelConfig::from_hf_json(&j, Path::new("c.json")).unwrap_err();
        assert!(err
            .to_string()
            .contains("unsupported architecture `gpt_neox`"));
        let mut j = base();
        j["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0});
        let err = ModelConfig::from_hf_json(&j, Path::new("c.json")).unwrap_err();
        assert!(
            err.to_string().contains("rope_scaling") && err.to_string().contains("yarn"),
            "{err}"
        );
        let mut j = base();
        j["num_key_value_heads"] = json!(3);
        let err = ModelConfig::from_hf_json(&j, Path::new("c.json")).unwrap_err();
        assert!(err.to_string().contains("num_key_value_heads"), "{err}");
    }
}
