//! augur's rollout engine: batched generation of G samples per prompt with a
//! shared prefill, a preallocated KV cache that drops finished rows, batched
//! sampling with per-token logprobs, stop strings and chat templates.

pub mod chat;
pub mod engine;
pub mod error;
pub mod params;
pub mod sampling;

pub use chat::{ChatTemplate, Message};
pub use engine::{Engine, FinishReason, GenerationStats, Sample};
pub use error::{Result, RolloutError};
pub use params::SamplingParams;
