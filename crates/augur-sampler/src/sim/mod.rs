//! The simulated learner: a cheap, deterministic stand-in for LLM RL, and a run of one sampler
//! on it (`augur-ablate` compares samplers with it: `augur ablate --simulate`).

mod learner;
mod runner;

pub use learner::{Component, SimConfig, SimLearner};
pub use runner::{run_simulation, OraclePredictor, RunResult, RunSpec, StepRecord};
