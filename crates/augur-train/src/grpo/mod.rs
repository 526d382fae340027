//! GRPO training with LoRA: the config ([`config`]), prompts and their sampler ([`data`]), the
//! policy update of one rollout batch ([`update`]), checkpoints in PEFT format ([`checkpoint`]) and
//! the loop that ties them together ([`trainer`]).

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod trainer;
pub mod update;

pub use config::GrpoConfig;
pub use trainer::{run, RunSummary};
