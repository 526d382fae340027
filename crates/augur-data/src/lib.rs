//! Datasets as rows of JSON fields, whatever they are stored as, so that prompt templates,
//! answer fields and verifiers see the same objects from every source:
//!
//! * a local JSONL file (one JSON object per line);
//! * a local Parquet file (`*.parquet`, the Hub's dataset format), one object per row with a
//!   field per column;
//! * a split of a Hugging Face Hub dataset repo, `hub:org/name[@revision]:[config/]split`
//!   (e.g. `hub:openai/gsm8k:main/train`), downloaded once into the shared Hub cache and read
//!   as the Parquet or JSONL files that hold it.
//!
//! [`recipe`] maps the known sets (GSM8K, MATH-500, AIME24, AMC23, Countdown, HumanEval, MBPP)
//! to their prompt template, answer field and verifier.

mod error;
mod jsonl;
mod parquet;
pub mod recipe;
mod rows;
#[cfg(feature = "test-util")]
pub mod testing;

pub use error::{DataError, Result};
pub use recipe::{recipe, Recipe, RECIPES};
pub use rows::{read_file, read_rows, read_rows_with, Position, Row, RowAt};
