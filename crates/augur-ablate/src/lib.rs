//! augur-ablate: experiments that compare methods side by side, and their reports.
//!
//! Every mode ends in the same [`Report`]: per-method means ± std over seeds
//! ([`MethodSummary`]), `summary.md`, `runs.csv` (a row per run), `steps.csv` (a row per step),
//! `summary.json` and the plots ([`plot`]).
//!
//! - [`sim`]: prompt samplers on the simulated learner of `augur_sampler::sim` (seconds).
//! - [`RealAblation`]: prompt samplers in real `augur grpo` runs, or SFT batch-selection
//!   methods in real `augur sft` runs, one per method × seed ([`plan`]), run resumably as child
//!   processes ([`exec`]); for SFT also the held-out accuracy of each checkpoint ([`accuracy`]).
//! - [`run`]: a run as the report reads it, from its `metrics.jsonl` or the simulation;
//!   [`calibration`]: what a predictive sampler knew, prompt by prompt.

pub mod accuracy;
pub mod calibration;
pub mod exec;
pub mod plan;
pub mod plot;
mod real;
pub mod report;
pub mod run;
pub mod sim;

pub use accuracy::AccuracySpec;
pub use real::RealAblation;
pub use report::{MethodSummary, Report, ReportSpec, Stat};
pub use run::{Mode, Run, StepRow};
