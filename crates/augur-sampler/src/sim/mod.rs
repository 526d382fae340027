//! Simulated learner and ablation: compare samplers against a cheap, deterministic stand-in
//! for LLM RL (`augur ablate --simulate`).

mod ablation;
mod learner;
mod plots;
mod runner;

pub use ablation::{
    markdown_table, run_ablation, run_simulated_ablation, runs_csv, AblationConfig, AblationReport,
    MethodSummary,
};
pub use learner::{Component, SimConfig, SimLearner};
pub use runner::{run_simulation, OraclePredictor, RunResult, RunSpec, StepRecord};
