//! The model-independent pieces of a GRPO update.
//!
//! Data flows through the modules in the order a training step uses them:
//!
//! 1. [`advantage`]: rewards of `G` completions per prompt → one advantage per completion.
//! 2. [`logprob`]: logits `[B, T, V]` and sampled ids → differentiable per-token log-probabilities
//!    (and entropies) without a float log-softmax over the whole vocabulary.
//! 3. [`loss`]: per-token log-probabilities, rollout-time log-probabilities, advantages and masks →
//!    a scalar policy loss (PPO clip, GSPO ratio, KL to the reference, entropy bonus) plus statistics.
//! 4. [`optim`] and [`schedule`]: a fused AdamW over flat `f32` buffers with global grad-norm clipping,
//!    a NaN/Inf guard and exportable state; warmup + cosine / constant learning rates.
//!
//! Nothing in those modules knows about models, tokenizers or rollouts: every function takes tensors or
//! slices and is unit-tested against hand-computed numbers. [`grpo`] is the training loop that puts them
//! together with the model, the rollout engine and the verifiers.

pub mod advantage;
pub mod chunked_logprob;
pub mod error;
pub mod grpo;
pub mod launch;
pub mod logprob;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod policy;
mod recipe;
pub mod run_dir;
pub mod schedule;
pub mod sft;
pub mod template;

pub use error::{Error, Result};
