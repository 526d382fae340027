//! Writing a model (with its LoRA adapters merged in) as a standard HF folder:
//! `config.json`, `model.safetensors`, `generation_config.json`, `tokenizer.json`
//! and `tokenizer_config.json`, loadable by transformers or by augur itself.
//!
//! Every file is written to a temporary name and renamed, so an interrupted export
//! never leaves a half-written folder that looks complete.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor};
use serde_json::json;

use crate::atomic::{save_tensors_atomic, write_atomic};
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::linear::LoraLinear;
use crate::model::DecoderModel;
use crate::tokenizer::TokenizerBundle;

/// `W + scale * B A` when an adapter is present, else `W`.
fn merged(linear: &LoraLinear) -> Result<Tensor> {
    let w = linear.dense_weight()?.to_dtype(DType::F32)?;
    Ok(match &linear.adapter {
        Some(ad) => (w + ad.delta()?.to_dtype(DType::F32)?)?,
        None => w,
    })
}

/// HF `config.json` for `cfg`.
fn hf_config(cfg: &ModelConfig) -> serde_json::Value {
    let arch = match cfg.arch {
        crate::Arch::Llama => "LlamaForCausalLM",
        crate::Arch::Qwen2 => "Qwen2ForCausalLM",
        crate::Arch::Qwen3 => "Qwen3ForCausalLM",
    };
    json!({
        "architectures": [arch],
        "model_type": cfg.arch.name(),
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "attention_bias": cfg.qkv_bias,
        "hidden_act": "silu",
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_ids,
        "torch_dtype": "float32",
    })
}

impl DecoderModel {
    /// All weights in HF naming, adapters merged, in f32.
    pub fn merged_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let f32 = |t: &Tensor| t.to_dtype(DType::F32);
        let mut out = HashMap::new();
        out.insert("model.embed_tokens.weight".to_string(), f32(&self.embed)?);
        out.insert("model.norm.weight".to_string(), f32(&self.norm)?);
        if !self.cfg.tie_word_embeddings {
            out.insert("lm_head.weight".to_string(), merged(&self.lm_head)?);
        }
        for (i, b) in self.blocks.iter().enumerate() {
            let p = format!("model.layers.{i}");
            out.insert(format!("{p}.input_layernorm.weight"), f32(&b.attn_norm)?);
            out.insert(
                format!("{p}.post_attention_layernorm.weight"),
                f32(&b.mlp_norm)?,
            );
            for (name, norm) in [("q_norm", &b.attn.q_norm), ("k_norm", &b.attn.k_norm)] {
                if let Some(w) = norm {
                    out.insert(format!("{p}.self_attn.{name}.weight"), f32(w)?);
                }
            }
        }
        for (i, target, linear) in self.projections() {
            let p = format!("model.layers.{i}.{}", target.hf_path());
            out.insert(format!("{p}.weight"), merged(linear)?);
            if let Some(b) = &linear.bias {
                out.insert(format!("{p}.bias"), f32(b)?);
            }
        }
        Ok(out)
    }

    /// Writes an HF model folder with adapters merged into the base weights.
    pub fn export_hf(&self, tokenizer: &TokenizerBundle, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
            path: dir.into(),
            source,
        })?;
        let tensors = self.merged_tensors()?;
        save_tensors_atomic(&dir.join("model.safetensors"), &tensors)?;
        let pretty =
            |v: &serde_json::Value| serde_json::to_vec_pretty(v).expect("JSON values serialise");
        write_atomic(&dir.join("config.json"), &pretty(&hf_config(&self.cfg)))?;
        let gen = json!({ "bos_token_id": self.cfg.bos_token_id, "eos_token_id": self.cfg.eos_token_ids });
        write_atomic(&dir.join("generation_config.json"), &pretty(&gen))?;
        let tok_json = tokenizer
            .tokenizer
            .to_string(false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        write_atomic(&dir.join("tokenizer.json"), tok_json.as_bytes())?;
        let pad = tokenizer.tokenizer.id_to_token(tokenizer.pad_id);
        let tok_cfg = json!({
            "chat_template": tokenizer.chat_template,
            "bos_token": tokenizer.bos_token,
            "eos_token": tokenizer.eos_token,
            "pad_token": pad,
            "add_bos_token": false,
        });
        write_atomic(&dir.join("tokenizer_config.json"), &pretty(&tok_cfg))
    }
}
