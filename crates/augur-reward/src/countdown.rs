//! Countdown: reach a target with `+ - * /` and parentheses over given numbers.
//!
//! The expression is taken from the last `<answer>..</answer>` (or `\boxed{}`), else from the last line of the
//! completion; a trailing `= target` is ignored. It is evaluated with exact rationals, must use only the given
//! numbers (each at most once, or exactly once with [`CountdownOptions::use_all`]) and equal the target.
//! Unary minus is allowed (it makes no new number); every literal must be one of the given numbers.

use num_rational::BigRational;
use num_traits::Zero;

use crate::math::extract::{last_boxed, last_tag};
use crate::reference::Reference;
use crate::verifier::{wrong_reference, Score, Verifier};

/// Countdown rules and reward shaping.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CountdownOptions {
    /// Every given number must be used exactly once (otherwise: at most once).
    pub use_all: bool,
    /// Reward for a well-formed but wrong answer in an `<answer>` tag (0 disables format shaping).
    pub format_reward: f32,
}

impl Default for CountdownOptions {
    fn default() -> Self {
        CountdownOptions {
            use_all: true,
            format_reward: 0.1,
        }
    }
}

/// The Countdown verifier.
#[derive(Debug, Clone, Default)]
pub struct CountdownVerifier {
    /// Rules and shaping.
    pub options: CountdownOptions,
}

impl CountdownVerifier {
    /// A verifier with the given options.
    pub fn new(options: CountdownOptions) -> Self {
        CountdownVerifier { options }
    }

    /// Scores one completion for the puzzle (`numbers`, `target`).
    pub fn score_puzzle(&self, completion: &str, numbers: &[i64], target: i64) -> Score {
        let tagged = last_tag(completion, "answer");
        let has_tag = tagged.is_some();
        let Some(raw) = tagged
            .or_else(|| last_boxed(completion))
            .or_else(|| last_line(completion))
        else {
            return Score::fail(None, "no answer found");
        };
        let expr = raw.split('=').next().unwrap_or("").trim().to_string();
        let shaped = |reason: String| Score {
            reward: if has_tag {
                self.options.format_reward
            } else {
                0.0
            },
            correct: false,
            extracted: Some(expr.clone()),
            reason,
        };
        let mut p = Parser::new(&expr);
        let value = match p.parse() {
            Ok(v) => v,
            Err(e) => {
                return Score::fail(Some(expr.clone()), format!("unparseable expression: {e}"))
            }
        };
        if let Err(e) = check_numbers(&p.used, numbers, self.options.use_all) {
            return shaped(e);
        }
        if value != BigRational::from_integer(target.into()) {
            return shaped(format!("evaluates to {value}, not {target}"));
        }
        Score::pass(Some(expr))
    }
}

impl Verifier for CountdownVerifier {
    fn score(&self, completion: &str, reference: &Reference) -> Score {
        match reference {
            Reference::Countdown { numbers, target } => {
                self.score_puzzle(completion, numbers, *target)
            }
            _ => wrong_reference("countdown"),
        }
    }
}

fn last_line(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .map(|l| l.trim().trim_matches('$').trim())
        .find(|l| l.chars().any(|c| c.is_ascii_digit()))
        .map(str::to_string)
}

fn check_numbers(used: &[i64], given: &[i64], use_all: bool) -> Result<(), String> {
    let mut pool: Vec<i64> = given.to_vec();
    for n in used {
        match pool.iter().position(|g| g == n) {
            Some(i) => {
                pool.swap_remove(i);
            }
            None => return Err(format!("uses {n}, which is not available")),
        }
    }
    if use_all && !pool.is_empty() {
        return Err(format!("does not use {pool:?}"));
    }
    Ok(())
}

/// Recursive-descent evaluator of `+ - * /` and parentheses over non-negative integer literals.
struct Parser {
    c: Vec<char>,
    i: usize,
    used: Vec<i64>,
    depth: usize,
}

impl Parser {
    fn new(s: &str) -> Self {
        let c = s
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| match c {
                '×' | 'x' => '*',
                '÷' => '/',
                '−' => '-',
                other => other,
            })
            .collect();
        Parser {
            c,
            i: 0,
            used: Vec::new(),
            depth: 0,
        }
    }

    fn parse(&mut self) -> Result<BigRational, String> {
        if self.c.is_empty() {
            return Err("empty".into());
        }
        let v = self.sum()?;
        if self.i != self.c.len() {
            return Err(format!("unexpected '{}'", self.c[self.i]));
        }
        Ok(v)
    }

    fn sum(&mut self) -> Result<BigRational, String> {
        let mut v = self.product()?;
        while let Some(&op) = self.c.get(self.i).filter(|c| **c == '+' || **c == '-') {
            self.i += 1;
            let r = self.product()?;
            v = if op == '+' { v + r } else { v - r };
        }
        Ok(v)
    }

    fn product(&mut self) -> Result<BigRational, String> {
        let mut v = self.atom()?;
        while let Some(&op) = self.c.get(self.i).filter(|c| **c == '*' || **c == '/') {
            self.i += 1;
            let r = self.atom()?;
            if op == '*' {
                v *= r;
            } else if r.is_zero() {
                return Err("division by zero".into());
            } else {
                v /= r;
            }
        }
        Ok(v)
    }

    fn atom(&mut self) -> Result<BigRational, String> {
        match self.c.get(self.i) {
            Some('(') => {
                self.depth += 1;
                if self.depth > 100 {
                    return Err("nesting too deep".into());
                }
                self.i += 1;
                let v = self.sum()?;
                if self.c.get(self.i) != Some(&')') {
                    return Err("missing ')'".into());
                }
                self.i += 1;
                self.depth -= 1;
                Ok(v)
            }
            Some(d) if d.is_ascii_digit() => {
                let start = self.i;
                while self.c.get(self.i).is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
                let s: String = self.c[start..self.i].iter().collect();
                let n: i64 = s.parse().map_err(|_| format!("number {s} too large"))?;
                self.used.push(n);
                Ok(BigRational::from_integer(n.into()))
            }
            Some('-') => {
                // Unary minus on a given number or group (`-3 + 45`): allowed, it creates no new number.
                self.i += 1;
                self.depth += 1;
                if self.depth > 100 {
                    return Err("nesting too deep".into());
                }
                let v = self.atom()?;
                self.depth -= 1;
                Ok(-v)
            }
            Some(c) => Err(format!("unexpected '{c}'")),
            None => Err("unexpected end".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdown_rules() {
        let v = CountdownVerifier::default();
        assert!(
            v.score_puzzle("<answer>(87 - 3) / 2</answer>", &[87, 3, 2], 42)
                .correct
        );
        assert!(
            v.score_puzzle("<answer>87 - 3*2 - 39 = 42</answer>", &[87, 3, 2, 39], 42)
                .correct
        );
        let s = v.score_puzzle("<answer>87 - 45</answer>", &[87, 3, 2], 42);
        assert!(!s.correct);
        assert_eq!(s.reward, 0.1);
        assert!(
            !v.score_puzzle("<answer>87 / (3 - 3)</answer>", &[87, 3, 3], 42)
                .correct
        );
        assert!(
            v.score_puzzle("<answer>-3 + 45</answer>", &[3, 45], 42)
                .correct
        );
        assert!(
            !v.score_puzzle("<answer>3 + 45</answer>", &[3, 45], 42)
                .correct
        );
        assert!(
            !v.score_puzzle("<answer>3 ++ 45</answer>", &[3, 45], 48)
                .correct
        );
        assert_eq!(v.score_puzzle("no tag", &[1], 1).reward, 0.0);
        let lax = CountdownVerifier::new(CountdownOptions {
            use_all: false,
            format_reward: 0.0,
        });
        assert!(
            lax.score_puzzle("<answer>42</answer>", &[42, 7], 42)
                .correct
        );
        assert!(!v.score_puzzle("<answer>42</answer>", &[42, 7], 42).correct);
        assert!(
            !lax.score_puzzle("<answer>42+42-42</answer>", &[42, 7], 42)
                .correct
        );
    }
}
