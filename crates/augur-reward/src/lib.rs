//! Verifiable rewards for RL post-training: the only ground truth of RLVR.
//!
//! * [`math`]: final-answer extraction and LaTeX/symbolic equivalence.
//! * [`countdown`]: arithmetic-puzzle checking with exact rationals.
//! * [`code`]: Python programs run against tests in a [`code::sandbox`].
//! * [`reference`]: the ground truth a completion is checked against ([`Reference`]).
//! * [`verifier`]: the common [`Verifier`] trait and [`Score`] the GRPO loop consumes.
//! * [`jsonl`]: batch scoring of JSONL files, the library side of `augur score`.

pub mod code;
pub mod countdown;
pub mod error;
pub mod jsonl;
pub mod math;
pub mod reference;
pub mod verifier;

pub use code::{CodeOptions, CodeVerifier, RewardMode};
pub use countdown::{CountdownOptions, CountdownVerifier};
pub use error::RewardError;
pub use jsonl::{score_jsonl, ScoreOptions, ScoreSummary, TaskKind};
pub use math::{is_equivalent, MathOptions, MathVerifier};
pub use reference::{CodeTests, Reference};
pub use verifier::{Score, Verifier};
