//! augur's model core: one decoder-only transformer for Llama (SmolLM2), Qwen2/2.5
//! and Qwen3, with LoRA-aware frozen linear layers, a batched KV cache, and
//! loading from HF folders or GGUF files.
//!
//! The forward pass has a fused path for rollouts and a differentiable path for
//! training; adapters can be switched off per call to get the reference policy.

pub mod atomic;
pub mod checkpoint;
pub mod config;
mod cpu_data;
pub mod cpu_threads;
mod decode_attn;
pub mod error;
pub mod export;
mod frozen;
mod full;
mod fused;
pub mod gguf_header;
pub mod input;
pub mod kv_cache;
pub mod linear;
pub mod loader;
pub mod lora;
pub mod mem;
pub mod model;
pub mod ops;
mod packed;
mod packed_bf16;
pub mod peft;
mod span_attn;
pub mod tokenizer;
mod train_ops;
pub mod weights;

pub use checkpoint::LayerTape;
pub use config::{Arch, ModelConfig};
pub use error::{ModelError, Result};
pub use input::StepInput;
pub use kv_cache::{KvCache, KvDtype};
pub use loader::{load_model, LoadedModel, ModelFormat};
pub use lora::{LoraConfig, Target};
pub use model::{BuildOptions, DecoderModel, ForwardOpts, LogitsAt, WeightDtype};
pub use ops::Grad;
pub use tokenizer::TokenizerBundle;
