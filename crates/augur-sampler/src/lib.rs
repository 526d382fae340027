//! augur-sampler: choose which prompts to roll out by *predicting* their success rate instead
//! of paying rollouts to find out. Prompts whose G rollouts are all right or all wrong have zero
//! GRPO advantage; a good sampler avoids them before rollout.
//!
//! Data flow: candidate ids → [`Sampler::select`] (predictor + acquisition) → rollouts →
//! [`Sampler::observe`] (update + [`StepTelemetry`]).
//!
//! - [`predictor`]: MoPPS Beta-Bernoulli ([`BetaPredictor`]), DPS HMM ([`DpsPredictor`]), GPS
//!   neural predictor over prompt [`embedding`]s ([`GpsPredictor`]), none.
//! - [`acquisition`]: uniform, target γ*, band, p(1−p), P(partial), CVaR, MPTS risk, HR, GRESO,
//!   GPS's greedy utility + diversity.
//! - [`DynamicSampling`]: DAPO's evaluate-then-filter baseline (needs a rollout callback).
//! - [`protocol::serve`]: JSON Lines over stdin/stdout for other training stacks.
//! - [`sim`]: simulated learner, oracle and one sampler's run on it (compared across samplers by
//!   `augur-ablate`).
//!
//! ```
//! use augur_sampler::{Method, Outcome, SamplerConfig};
//! let mut s = SamplerConfig::for_method(Method::Mopps).build().unwrap();
//! let pool: Vec<u32> = (0..1000).collect();
//! let sel = s.select(&pool, 8).unwrap();
//! let outs: Vec<Outcome> = sel.ids.iter().map(|&id| Outcome::new(id, 3, 8)).collect();
//! let tel = s.observe(&outs).unwrap();
//! assert_eq!(tel.rollouts, 64);
//! ```
#![warn(missing_docs)]

pub mod acquisition;
mod config;
mod ds;
pub mod embedding;
mod error;
mod outcome;
pub mod predictor;
mod prompt_table;
pub mod protocol;
pub mod random;
mod sampler;
pub mod sim;
mod telemetry;
mod topk;

pub use config::{apply_override, AcquisitionConfig, Method, PredictorConfig, SamplerConfig};
pub use ds::{DsConfig, DsStep, DynamicSampling};
pub use embedding::{EmbeddingTable, SharedEmbeddings};
pub use error::{Result, SamplerError};
pub use outcome::{validate_batch, Outcome, SolveState, MAX_PROMPT_ID};
pub use predictor::{
    BetaPredictor, DpsPredictor, GpsConfig, GpsPredictor, NonePredictor, PredictCtx, Predictor,
    Quantity,
};
pub use protocol::serve;
pub use sampler::{Estimates, Sampler, SamplerState, Selection, STATE_VERSION};
pub use telemetry::{brier, spearman, StepTelemetry};
pub use topk::smallest_b;
