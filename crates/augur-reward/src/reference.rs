//! What a completion is checked against: the ground truth each task's verifier reads. Its own
//! module so that the [`crate::verifier`] interface and the verifiers (math, countdown, code) all
//! depend on it, and on nothing of each other's.

use serde::{Deserialize, Serialize};

/// The ground truth a completion is checked against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reference {
    /// A math problem's final answer, usually LaTeX (`\frac{14}{3}`, `(3,4]`, `\text{(C)}`...).
    Math {
        /// The reference answer.
        answer: String,
    },
    /// A Countdown puzzle: reach `target` with arithmetic on `numbers`.
    Countdown {
        /// The numbers available.
        numbers: Vec<i64>,
        /// The value to reach.
        target: i64,
    },
    /// A programming problem judged by running tests.
    Code(CodeTests),
}

/// The tests a program is judged by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "style", rename_all = "snake_case")]
pub enum CodeTests {
    /// HumanEval: a `check(candidate)` function.
    HumanEval {
        /// The problem prompt (signature + docstring), prepended to the program.
        #[serde(default)]
        prompt: String,
        /// Source defining `check`.
        test: String,
        /// The function passed to `check`.
        entry_point: String,
    },
    /// MBPP: independent `assert` statements.
    Asserts {
        /// Code run after the program and before the asserts (imports, fixtures: MBPP's `test_setup_code`
        /// builds objects from classes the program defines).
        #[serde(default)]
        setup: String,
        /// One Python statement per test.
        asserts: Vec<String>,
    },
    /// Competitive-programming style stdin/stdout pairs.
    StdIo {
        /// The cases.
        cases: Vec<IoCase>,
    },
}

/// One stdin/stdout test case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IoCase {
    /// Fed on stdin.
    pub input: String,
    /// Expected stdout.
    pub output: String,
}
