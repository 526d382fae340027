//! Opening a model from disk: an HF folder or a GGUF file, plus its tokenizer.

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Content;
use serde_json::Value;

use crate::config::{token_id_list, Arch, ModelConfig};
use crate::error::{ModelError, Result};
use crate::model::{BuildOptions, DecoderModel};
use crate::tokenizer::{gguf_str, TokenizerBundle};
use crate::weights::{GgufSource, SafetensorsSource, TensorSource};

/// The on-disk format a model came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelFormat {
    HfFolder,
    Gguf { quantization: String },
}

/// A ready model with its tokenizer and where it came from.
pub struct LoadedModel {
    pub model: DecoderModel,
    pub tokenizer: TokenizerBundle,
    pub format: ModelFormat,
    pub path: PathBuf,
}

/// Loads `path`: a `.gguf` file, or a folder with `config.json` (or a single `.gguf`).
/// `tokenizer_dir` overrides where `tokenizer.json` is read from.
pub fn load_model(
    path: &Path,
    tokenizer_dir: Option<&Path>,
    opts: &BuildOptions,
) -> Result<LoadedModel> {
    let gguf = if path.is_file() {
        Some(path.to_path_buf())
    } else if path.join("config.json").is_file() {
        None
    } else {
        Some(single_gguf_in(path)?)
    };
    let loaded = match gguf {
        Some(file) => load_gguf(&file, tokenizer_dir, opts)?,
        None => load_hf_dir(path, tokenizer_dir, opts)?,
    };
    let tok_vocab = loaded.tokenizer.vocab_size();
    if tok_vocab > loaded.model.cfg.vocab_size {
        return Err(ModelError::Checkpoint {
            path: loaded.path.clone(),
            problem: format!(
                "tokenizer has {tok_vocab} tokens but the embedding matrix has only {} rows (vocab_size)",
                loaded.model.cfg.vocab_size
            ),
        });
    }
    Ok(loaded)
}

fn single_gguf_in(dir: &Path) -> Result<PathBuf> {
    let entries = std::fs::read_dir(dir).map_err(|source| ModelError::Io {
        path: dir.into(),
        source,
    })?;
    let ggufs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    match ggufs.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(ModelError::Checkpoint {
            path: dir.into(),
            problem: "no config.json and no .gguf file".into(),
        }),
        _ => Err(ModelError::Checkpoint {
            path: dir.into(),
            problem: "several .gguf files: name one".into(),
        }),
    }
}

fn load_hf_dir(
    dir: &Path,
    tokenizer_dir: Option<&Path>,
    opts: &BuildOptions,
) -> Result<LoadedModel> {
    let mut cfg = ModelConfig::from_hf_file(&dir.join("config.json"))?;
    let gen_path = dir.join("generation_config.json");
    if let Ok(text) = std::fs::read_to_string(&gen_path) {
        let gen: Value = serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: gen_path,
            source,
        })?;
        for id in token_id_list(gen.get("eos_token_id")) {
            if !cfg.eos_token_ids.contains(&id) {
                cfg.eos_token_ids.push(id);
            }
        }
    }
    let mut src = SafetensorsSource::open_dir(dir, &opts.device)?;
    let model = DecoderModel::build(cfg, &mut src, opts)?;
    let tokenizer =
        TokenizerBundle::from_dir(tokenizer_dir.unwrap_or(dir), &model.cfg.eos_token_ids)?;
    Ok(LoadedModel {
        model,
        tokenizer,
        format: ModelFormat::HfFolder,
        path: dir.into(),
    })
}

fn load_gguf(
    file: &Path,
    tokenizer_dir: Option<&Path>,
    opts: &BuildOptions,
) -> Result<LoadedModel> {
    let mut src = GgufSource::open(file, &opts.device)?;
    let mut cfg = config_from_gguf(&src.content, file)?;
    let tokenizer = match tokenizer_dir {
        Some(dir) => TokenizerBundle::from_dir(dir, &cfg.eos_token_ids)?,
        None => TokenizerBundle::from_gguf(&src.content, file)?,
    };
    for &id in &tokenizer.eos_ids {
        if !cfg.eos_token_ids.contains(&id) {
            cfg.eos_token_ids.push(id);
        }
    }
    cfg.tie_word_embeddings = !src.has("lm_head.weight");
    if cfg.arch == Arch::Llama {
        src.set_unpermute(cfg.num_heads, cfg.num_kv_heads);
    }
    let quantization = src
        .content
        .tensor_infos
        .get("blk.0.attn_q.weight")
        .map(|t| format!("{:?}", t.ggml_dtype))
        .unwrap_or_else(|| "unknown".into());
    let model = DecoderModel::build(cfg, &mut src, opts)?;
    Ok(LoadedModel {
        model,
        tokenizer,
        format: ModelFormat::Gguf { quantization },
        path: file.into(),
    })
}

/// Reads the hyper-parameters from GGUF `{arch}.*` metadata keys.
pub fn config_from_gguf(content: &Content, path: &Path) -> Result<ModelConfig> {
    let arch_name = gguf_str(content, "general.architecture")
        .ok_or_else(|| ModelError::field(path, "general.architecture", "missing"))?;
    let arch = Arch::parse(arch_name).ok_or_else(|| ModelError::UnsupportedArch {
        path: path.into(),
        arch: arch_name.clone(),
    })?;
    let a = arch.name();
    let md = &content.metadata;
    let get_usize = |key: &str| -> Result<usize> {
        let full = format!("{a}.{key}");
        let v = md
            .get(&full)
            .ok_or_else(|| ModelError::field(path, &full, "missing"))?;
        v.to_u64()
            .or_else(|_| v.to_u32().map(u64::from))
            .map(|n| n as usize)
            .map_err(|e| ModelError::field(path, &full, e.to_string()))
    };
    let get_f64 = |key: &str, default: f64| -> f64 {
        md.get(&format!("{a}.{key}"))
            .and_then(|v| v.to_f32().ok())
            .map_or(default, f64::from)
    };
    let hidden_size = get_usize("embedding_length")?;
    let num_heads = get_usize("attention.head_count")?;
    if num_heads == 0 {
        return Err(ModelError::field(
            path,
            &format!("{a}.attention.head_count"),
            "must be at least 1",
        ));
    }
    let vocab_size = match content.tensor_infos.get("token_embd.weight") {
        Some(info) => match info.shape.dims().first() {
            Some(&n) => n,
            None => {
                return Err(ModelError::tensor(
                    path,
                    "token_embd.weight",
                    "has no dimensions",
                ))
            }
        },
        None => {
            return Err(ModelError::tensor(
                path,
                "token_embd.weight",
                "missing from the GGUF file",
            ))
        }
    };
    let id = |k: &str| md.get(k).and_then(|v| v.to_u32().ok());
    let cfg = ModelConfig {
        arch,
        vocab_size,
        hidden_size,
        intermediate_size: get_usize("feed_forward_length")?,
        num_layers: get_usize("block_count")?,
        num_heads,
        num_kv_heads: get_usize("attention.head_count_kv").unwrap_or(num_heads),
        head_dim: get_usize("attention.key_length").unwrap_or(hidden_size / num_heads),
        rms_norm_eps: get_f64("attention.layer_norm_rms_epsilon", 1e-6),
        rope_theta: get_f64("rope.freq_base", 10_000.0),
        max_position_embeddings: get_usize("context_length").unwrap_or(4096),
        tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
        qkv_bias: content.tensor_infos.contains_key("blk.0.attn_q.bias"),
        qk_norm: arch == Arch::Qwen3,
        bos_token_id: id("tokenizer.ggml.bos_token_id"),
        eos_token_ids: id("tokenizer.ggml.eos_token_id").into_iter().collect(),
    };
    cfg.validate(path)?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::gguf_file::{TensorInfo, Value, VersionedMagic};

    fn content(heads: u32, embd_dims: Vec<usize>) -> Content {
        let metadata = [
            ("general.architecture", Value::String("llama".into())),
            ("llama.embedding_length", Value::U32(64)),
            ("llama.attention.head_count", Value::U32(heads)),
            ("llama.feed_forward_length", Value::U32(128)),
            ("llama.block_count", Value::U32(2)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let info = TensorInfo {
            shape: embd_dims.into(),
            offset: 0,
            ggml_dtype: candle_core::quantized::GgmlDType::F32,
        };
        Content {
            magic: VersionedMagic::GgufV3,
            metadata,
            tensor_infos: [("token_embd.weight".to_string(), info)].into(),
            tensor_data_offset: 0,
        }
    }

    #[test]
    fn crafted_gguf_sizes_are_errors_not_panics() {
        let path = Path::new("m.gguf");
        assert_eq!(
            config_from_gguf(&content(4, vec![256, 64]), path)
                .unwrap()
                .head_dim,
            16
        );
        let err = config_from_gguf(&content(0, vec![256, 64]), path).unwrap_err();
        assert!(
            err.to_string().contains("llama.attention.head_count"),
            "{err}"
        );
        let err = config_from_gguf(&content(4, vec![]), path).unwrap_err();
        assert!(err.to_string().contains("token_embd.weight"), "{err}");
    }
}
