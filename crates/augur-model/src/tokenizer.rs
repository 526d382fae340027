//! Tokenizer and chat-template facts, from `tokenizer.json` + `tokenizer_config.json`
//! or rebuilt from GGUF metadata when a GGUF file is all the user has.

use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use crate::error::{ModelError, Result};

/// A tokenizer plus what generation needs to know about it.
#[derive(Clone)]
pub struct TokenizerBundle {
    pub tokenizer: Tokenizer,
    /// Jinja chat template, if the model ships one.
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// Token ids that end a generation.
    pub eos_ids: Vec<u32>,
    /// Id used to pad batches (never attended to).
    pub pad_id: u32,
}

impl TokenizerBundle {
    /// Number of entries in the vocabulary, including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Encodes text without adding special tokens (templates add their own).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes ids, skipping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))
    }

    /// Loads `tokenizer.json` and, if present, `tokenizer_config.json` from `dir`.
    pub fn from_dir(dir: &Path, eos_from_config: &[u32]) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&path).map_err(|e| ModelError::Checkpoint {
            path: path.clone(),
            problem: format!("cannot load tokenizer: {e}"),
        })?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: serde_json::Value = match std::fs::read_to_string(&cfg_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|source| ModelError::Json {
                path: cfg_path.clone(),
                source,
            })?,
            Err(_) => serde_json::Value::Null,
        };
        let token_str = |key: &str| -> Option<String> {
            match cfg.get(key)? {
                serde_json::Value::String(s) => Some(s.clone()),
                obj => obj.get("content")?.as_str().map(str::to_string),
            }
        };
        let chat_template = match cfg.get("chat_template") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            _ => std::fs::read_to_string(dir.join("chat_template.jinja")).ok(),
        };
        let (bos_token, eos_token) = (token_str("bos_token"), token_str("eos_token"));
        let mut eos_ids = eos_from_config.to_vec();
        if let Some(id) = eos_token.as_deref().and_then(|t| tokenizer.token_to_id(t)) {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
        let pad_id = token_str("pad_token")
            .and_then(|t| tokenizer.token_to_id(&t))
            .or(eos_ids.first().copied())
            .unwrap_or(0);
        Ok(TokenizerBundle {
            tokenizer,
            chat_template,
            bos_token,
            eos_token,
            eos_ids,
            pad_id,
        })
    }

    /// Rebuilds a byte-level BPE tokenizer from GGUF `tokenizer.ggml.*` metadata.
    pub fn from_gguf(content: &Content, path: &Path) -> Result<Self> {
        let md = &content.metadata;
        let field = |k: &str| {
            md.get(k)
                .ok_or_else(|| ModelError::field(path, k, "missing from GGUF metadata"))
        };
        let model = field("tokenizer.ggml.model")?
            .to_string()
            .map_err(|e| ModelError::field(path, "tokenizer.ggml.model", e.to_string()))?;
        if model != "gpt2" {
            return Err(ModelError::field(
                path,
                "tokenizer.ggml.model",
                format!("`{model}` tokenizers are not supported (only byte-level BPE `gpt2`); pass a tokenizer.json"),
            ));
        }
        let strings = |k: &str| -> Result<Vec<String>> {
            let arr = field(k)?
                .to_vec()
                .map_err(|e| ModelError::field(path, k, e.to_string()))?;
            arr.iter()
                .map(|v| {
                    v.to_string()
                        .cloned()
                        .map_err(|e| ModelError::field(path, k, e.to_string()))
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges: Vec<(String, String)> = strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| {
                        ModelError::field(
                            path,
                            "tokenizer.ggml.merges",
                            format!("malformed merge `{m}`"),
                        )
                    })
            })
            .collect::<Result<_>>()?;
        let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|e| ModelError::field(path, "tokenizer.ggml.token_type", e.to_string()))?
                .iter()
                .map(|t| t.to_i32().unwrap_or(1))
                .collect(),
            None => vec![1; tokens.len()],
        };
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| {
                ModelError::Tokenizer(format!("{}: cannot build BPE: {e}", path.display()))
            })?;
        let mut tokenizer = Tokenizer::new(bpe);
        let pre = md
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .map(String::as_str)
            .unwrap_or("gpt2");
        tokenizer.with_pre_tokenizer(Some(pre_tokenizer(pre, path)?));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
        // Control (3) and user-defined (4) tokens are matched whole, never split by BPE.
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &t)| t == 3 || t == 4)
            .map(|(tok, &t)| AddedToken::from(tok.clone(), t == 3))
            .collect();
        tokenizer
            .add_special_tokens(specials)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let id = |k: &str| md.get(k).and_then(|v| v.to_u32().ok());
        let token_of = |i: Option<u32>| i.and_then(|i| tokens.get(i as usize).cloned());
        let eos_ids: Vec<u32> = id("tokenizer.ggml.eos_token_id").into_iter().collect();
        let chat_template = md
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .cloned();
        let pad_id = id("tokenizer.ggml.padding_token_id")
            .or(eos_ids.first().copied())
            .unwrap_or(0);
        Ok(TokenizerBundle {
            tokenizer,
            chat_template,
            bos_token: token_of(id("tokenizer.ggml.bos_token_id")),
            eos_token: token_of(eos_ids.first().copied()),
            eos_ids,
            pad_id,
        })
    }
}

/// Llama-3's split regex (numbers in groups of up to three digits).
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split regex (digits one by one, case-insensitive contractions).
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizer llama.cpp names in `tokenizer.ggml.pre`.
fn pre_tokenizer(pre: &str, path: &Path) -> Result<PreTokenizerWrapper> {
    let split = |pattern: &str| -> Result<PreTokenizerWrapper> {
        Split::new(
            SplitPattern::Regex(pattern.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map(PreTokenizerWrapper::Split)
        .map_err(|e| ModelError::Tokenizer(e.to_string()))
    };
    let byte_level = PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false));
    Ok(match pre {
        "gpt2" | "default" => PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
        "smollm" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
        ])),
        "qwen2" | "qwen35" => PreTokenizerWrapper::Sequence(Sequence::new(vec![split(QWEN2_PATTERN)?, byte_level])),
        "llama-bpe" | "llama3" => PreTokenizerWrapper::Sequence(Sequence::new(vec![split(LLAMA3_PATTERN)?, byte_level])),
        other => {
            return Err(ModelError::field(
                path,
                "tokenizer.ggml.pre",
                format!("unknown pre-tokenizer `{other}` (known: gpt2, smollm, qwen2, llama-bpe); pass a tokenizer.json"),
            ))
        }
    })
}

/// Reads a string-valued GGUF metadata key.
pub(crate) fn gguf_str<'a>(content: &'a Content, key: &str) -> Option<&'a String> {
    content
        .metadata
        .get(key)
        .and_then(|v: &Value| v.to_string().ok())
}
