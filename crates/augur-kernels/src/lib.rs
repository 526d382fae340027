//! augur's own fused kernels, each a CUDA kernel in the repository's `kernels/` folder (compiled
//! to PTX by `build.rs` with the `cuda` feature) with a CPU twin of the same semantics:
//!
//! * [`token_logprob_entropy`]: every position's target log-probability and entropy from logits
//!   `[N, V]` in one online-logsumexp pass, differentiable, never materialising a `[N, V]`
//!   log-softmax;
//! * [`sample_last`]: temperature, top-k / top-p / min-p and a draw from last-position logits
//!   `[B, V]` with a counter-based Philox RNG, returning only `B` (token, logprob) pairs.
//!
//! A CUDA tensor goes to the kernel, a CPU tensor to the twin; tests compare the two whenever
//! a GPU is present.

#[cfg(feature = "cuda")]
mod cuda;
mod logprob;
pub mod philox;
mod sampling;

pub use logprob::{row_stats, token_logprob_entropy};
pub use philox::RowRng;
pub use sampling::{sample_last, sample_row, Sampled, SamplingConfig};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Whether this build can run the CUDA kernels (built with the `cuda` feature).
pub const CUDA_BUILD: bool = cfg!(feature = "cuda");
