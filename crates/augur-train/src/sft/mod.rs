//! Supervised fine-tuning with online batch selection: the config ([`config`]), what is trained
//! (LoRA adapters or every weight, [`weights`]), examples with
//! their loss masks ([`data`]), the completion-only loss ([`loss`]), packed rows ([`packing`]), which candidates a step
//! trains on ([`selection`], with UDS's scores in [`uds`]), checkpoints ([`checkpoint`]) and
//! the loop that ties them together ([`trainer`]).

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod loss;
pub mod packing;
pub mod selection;
pub mod trainer;
pub mod uds;
pub mod weights;

pub use crate::run_dir::Launch;
pub use config::SftConfig;
pub use trainer::{run_with, SftSummary};
