//! Math answer checking: [`extract`] finds the final answer in a completion, [`normalize`] cleans LaTeX noise,
//! [`answer`] and [`expr`] parse it, [`equiv`] decides equivalence with the reference.
//!
//! No maintained Rust crate parses the LaTeX subset found in math answers into something comparable, so this
//! module carries a small parser; the corpus in `tests/data/math_cases.jsonl` pins its behaviour.

pub mod answer;
pub mod equiv;
pub mod eval;
pub mod expr;
pub mod extract;
pub mod lexer;
pub mod normalize;

use crate::reference::Reference;
use crate::verifier::{wrong_reference, Score, Verifier};

/// Longest extracted answer that is parsed; longer ones are judged wrong (bounds the cost of hostile text).
const MAX_ANSWER_CHARS: usize = 2000;

/// Options of the math verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MathOptions {
    /// Fall back to the last number in the completion when no explicit answer marker is found.
    pub last_number_fallback: bool,
}

impl Default for MathOptions {
    fn default() -> Self {
        MathOptions {
            last_number_fallback: true,
        }
    }
}

/// Verifies math completions against a reference answer (reward 1 if equivalent, else 0).
#[derive(Debug, Clone, Default)]
pub struct MathVerifier {
    /// Extraction options.
    pub options: MathOptions,
}

impl MathVerifier {
    /// A verifier with the given options.
    pub fn new(options: MathOptions) -> Self {
        MathVerifier { options }
    }

    /// Scores a completion against a reference answer string.
    pub fn score_answer(&self, completion: &str, reference: &str) -> Score {
        let Some((answer, _source)) =
            extract::extract_answer(completion, self.options.last_number_fallback)
        else {
            let reason = if self.options.last_number_fallback {
                "no answer found"
            } else {
                "no boxed answer"
            };
            return Score::fail(None, reason);
        };
        if answer.chars().count() > MAX_ANSWER_CHARS {
            return Score::fail(None, "answer too long");
        }
        if is_equivalent(&answer, reference) {
            Score::pass(Some(answer))
        } else {
            Score::fail(Some(answer), "wrong answer")
        }
    }
}

impl Verifier for MathVerifier {
    fn score(&self, completion: &str, reference: &Reference) -> Score {
        match reference {
            Reference::Math { answer } => self.score_answer(completion, answer),
            _ => wrong_reference("math"),
        }
    }
}

/// Whether the answer `pred` is mathematically equivalent to `reference` (both already extracted, LaTeX or
/// plain text). Symmetric up to the percent rule; never panics.
pub fn is_equivalent(pred: &str, reference: &str) -> bool {
    let a = normalize::normalize(pred);
    let b = normalize::normalize(reference);
    if a.text.is_empty() || b.text.is_empty() {
        return false;
    }
    if a.text == b.text {
        return true;
    }
    if is_wordy(&a.text) || is_wordy(&b.text) {
        return a.text.eq_ignore_ascii_case(&b.text);
    }
    let (Some(x), Some(y)) = (
        answer::parse_answer(&a.spaced),
        answer::parse_answer(&b.spaced),
    ) else {
        return false;
    };
    equiv::answers_equal(&x, &y) || ((a.percent || b.percent) && equiv::percent_equal(&x, &y))
}

/// Text containing a run of 3+ letters that is not a LaTeX command is a word answer (`Evelyn`, `even`):
/// compared as text, never as a product of single-letter variables.
fn is_wordy(s: &str) -> bool {
    let mut owned = s.to_string();
    for env in ["pmatrix", "bmatrix", "vmatrix", "matrix", "array", "cases"] {
        owned = owned.replace(&format!("{{{env}}}"), "{}");
    }
    let b = owned.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphabetic() {
            let start = i;
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            let after_backslash = start > 0 && b[start - 1] == b'\\';
            if !after_backslash && i - start >= 3 {
                return true;
            }
        } else {
            i += 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random LaTeX-ish garbage never panics, never hangs, and is never equal to a different number.
    #[test]
    fn garbage_is_handled() {
        const PIECES: &[&str] = &[
            "\\frac",
            "{",
            "}",
            "(",
            ")",
            "[",
            "]",
            "\\{",
            "\\}",
            "\\sqrt",
            "^",
            "_",
            "-",
            "+",
            "*",
            "/",
            "1",
            "23",
            ".5",
            "x",
            "y",
            "\\pi",
            "\\infty",
            ",",
            "=",
            "\\pm",
            "\\cup",
            "\\text{",
            "cm",
            " ",
            "\\\\",
            "&",
            "\\begin{pmatrix}",
            "\\end{pmatrix}",
            "!",
            "|",
            "\\left(",
            "\\right)",
            "%",
            "$",
            "\\boxed{",
            "e",
            "\\log",
            "\\sin",
            "10^{10^{10}}",
        ];
        let mut state = 12345u64;
        for _ in 0..3000 {
            let mut s = String::new();
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            for _ in 0..(state >> 59) + 1 {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                s.push_str(PIECES[(state >> 33) as usize % PIECES.len()]);
            }
            let _ = is_equivalent(&s, "3");
            let _ = is_equivalent(&s, &s);
            let _ = MathVerifier::default().score_answer(&s, "x+1");
        }
        let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
        assert!(!is_equivalent(&deep, "2"));
        let minus = format!("{}1", "-".repeat(5000));
        assert!(!is_equivalent(&minus, "2"));
        let tower = format!("2{}", "^2".repeat(3000));
        assert!(!is_equivalent(&tower, "2"));
    }
}
