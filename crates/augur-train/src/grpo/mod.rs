//! GRPO training with LoRA: the config ([`config`]), prompts ([`data`]) and which of them a step
//! uses ([`selection`]), rollouts and rewards of a batch ([`rollout`]), held-out evaluation
//! ([`eval`]), the
//! policy update of one rollout batch ([`update`]), checkpoints in PEFT format ([`checkpoint`]) and
//! the loop that ties them together ([`trainer`]).

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod embed;
pub mod eval;
pub mod rollout;
pub mod selection;
pub mod trainer;
pub mod update;

pub use crate::run_dir::Launch;
pub use config::GrpoConfig;
pub use trainer::{run, run_with, RunSummary};
