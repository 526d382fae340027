//! Code rewards: the completion's Python program is run against tests inside a [`sandbox::Sandbox`].
//!
//! The program is the last fenced code block of the completion (```` ```python ````), or the whole completion
//! when it has none. Three test styles:
//! * [`CodeTests::HumanEval`]: `prompt` + program + `test` + `check(entry_point)`; a program that starts with
//!   `def entry_point` replaces the prompt's stub, anything else is taken as the body that continues the prompt.
//! * [`CodeTests::Asserts`] (MBPP): program + `setup`, then each assert runs in its own `try`.
//! * [`CodeTests::StdIo`]: one run per case, stdout compared to the expected output (trailing whitespace and
//!   blank lines ignored).
//!
//! A test passes only when the harness prints a per-run random marker after it, so a program that exits early
//! (`sys.exit(0)`) fails instead of passing. A program that reads the harness can still forge the marker; the
//! sandbox bounds what it can do, not what it can fake.

mod host;
pub mod sandbox;

use rayon::prelude::*;

use crate::error::RewardError;
use crate::reference::Reference;
pub use crate::reference::{CodeTests, IoCase};
use crate::verifier::{wrong_reference, Score, Verifier};
use sandbox::{Outcome, RunOutput, Sandbox, SandboxConfig};

/// Reward for a program: all-or-nothing, or the fraction of tests passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RewardMode {
    /// 1 if every test passes, else 0.
    #[default]
    Binary,
    /// Passed tests / total tests (HumanEval's single `check` is still 0/1).
    Fraction,
}

/// Options of the code verifier.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeOptions {
    /// Sandbox limits.
    pub sandbox: SandboxConfig,
    /// Programs run at the same time (the subprocess concurrency bound).
    pub workers: usize,
    /// Reward shape.
    pub mode: RewardMode,
}

impl Default for CodeOptions {
    fn default() -> Self {
        CodeOptions {
            sandbox: SandboxConfig::default(),
            workers: 2,
            mode: RewardMode::Binary,
        }
    }
}

/// Runs completions' programs against tests; `score_batch` uses a private pool of `workers` threads.
#[derive(Debug)]
pub struct CodeVerifier {
    sandbox: Sandbox,
    pool: rayon::ThreadPool,
    mode: RewardMode,
}

impl CodeVerifier {
    /// Probes the sandbox (see [`Sandbox::new`]) and builds the worker pool.
    pub fn new(options: CodeOptions) -> Result<Self, RewardError> {
        let workers = options.workers.max(1);
        let sandbox = Sandbox::new(options.sandbox, workers)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(|i| format!("augur-code-{i}"))
            .build()
            .map_err(|e| RewardError::Sandbox(format!("thread pool: {e}")))?;
        Ok(CodeVerifier {
            sandbox,
            pool,
            mode: options.mode,
        })
    }

    /// The sandbox in use (to report its isolation level).
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Scores one completion against `tests`.
    pub fn score_tests(&self, completion: &str, tests: &CodeTests) -> Score {
        let code = extract_code(completion);
        if code.trim().is_empty() {
            return Score::fail(None, "no code found");
        }
        let scored = match tests {
            CodeTests::HumanEval {
                prompt,
                test,
                entry_point,
            } => self.human_eval(&code, prompt, test, entry_point),
            CodeTests::Asserts { setup, asserts } => self.asserts(&code, setup, asserts),
            CodeTests::StdIo { cases } => self.stdio(&code, cases),
        };
        let (passed, total, reason) = match scored {
            Ok(r) => r,
            Err(e) => (0, 1, format!("sandbox error: {e}")),
        };
        let correct = total > 0 && passed == total;
        let reward = match self.mode {
            _ if correct => 1.0,
            RewardMode::Binary => 0.0,
            RewardMode::Fraction if total > 0 => passed as f32 / total as f32,
            RewardMode::Fraction => 0.0,
        };
        Score {
            reward,
            correct,
            extracted: Some(code),
            reason: if correct {
                format!("passed {passed}/{total}")
            } else {
                reason
            },
        }
    }

    fn human_eval(
        &self,
        code: &str,
        prompt: &str,
        test: &str,
        entry: &str,
    ) -> Result<(usize, usize, String), RewardError> {
        let nonce = nonce();
        let defines = code.lines().any(|l| l.starts_with(&format!("def {entry}")));
        let body = if defines {
            format!("{prompt}\n\n{code}")
        } else {
            format!("{prompt}{code}")
        };
        let program =
            format!("{body}\n\n{test}\n\ncheck({entry})\nprint('\\n{nonce}:0:pass', flush=True)\n");
        let out = self.sandbox.run(&program, "")?;
        let passed = passed_markers(&out.stdout, &nonce, 1);
        Ok((passed, 1, failure_reason(&out, passed, 1)))
    }

    fn asserts(
        &self,
        code: &str,
        setup: &str,
        asserts: &[String],
    ) -> Result<(usize, usize, String), RewardError> {
        let nonce = nonce();
        let list = serde_json::to_string(asserts).unwrap_or_else(|_| "[]".into());
        let program = format!(
            "{code}\n\n{setup}\n\nfor __augur_i, __augur_t in enumerate({list}):\n    try:\n        \
             exec(__augur_t, globals())\n        print('\\n{nonce}:%d:pass' % __augur_i, flush=True)\n    \
             except BaseException as __augur_e:\n        print('\\n{nonce}:%d:fail' % __augur_i, flush=True)\n"
        );
        let out = self.sandbox.run(&program, "")?;
        let passed = passed_markers(&out.stdout, &nonce, asserts.len());
        Ok((
            passed,
            asserts.len(),
            failure_reason(&out, passed, asserts.len()),
        ))
    }

    fn stdio(&self, code: &str, cases: &[IoCase]) -> Result<(usize, usize, String), RewardError> {
        let mut passed = 0;
        let mut reason = String::new();
        for case in cases {
            let out = self.sandbox.run(code, &case.input)?;
            let ok = out.outcome == Outcome::Exited(0) && same_output(&out.stdout, &case.output);
            if ok {
                passed += 1;
            } else {
                if reason.is_empty() {
                    reason = failure_reason(&out, 0, 1);
                    if reason.starts_with("passed") {
                        reason = "wrong output".into();
                    }
                }
                if self.mode == RewardMode::Binary {
                    break;
                }
            }
        }
        Ok((
            passed,
            cases.len(),
            format!("passed {passed}/{}: {reason}", cases.len()),
        ))
    }
}

impl Verifier for CodeVerifier {
    fn score(&self, completion: &str, reference: &Reference) -> Score {
        match reference {
            Reference::Code(tests) => self.score_tests(completion, tests),
            _ => wrong_reference("code"),
        }
    }

    fn score_batch(&self, items: &[(&str, &Reference)]) -> Vec<Score> {
        self.pool
            .install(|| items.par_iter().map(|(c, r)| self.score(c, r)).collect())
    }
}

/// The last fenced code block (preferring ```` ```python ````), else the whole text.
pub fn extract_code(completion: &str) -> String {
    let mut blocks = Vec::new();
    let mut rest = completion;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let Some(end) = after.find("```") else { break };
        let block = &after[..end];
        let (lang, body) = block.split_once('\n').unwrap_or(("", block));
        blocks.push((lang.trim().to_ascii_lowercase(), body.to_string()));
        rest = &after[end + 3..];
    }
    let python = blocks
        .iter()
        .rev()
        .find(|(l, _)| l == "python" || l == "py" || l == "python3");
    match python.or(blocks.last()) {
        Some((_, body)) => body.clone(),
        None => completion.to_string(),
    }
}

fn passed_markers(stdout: &str, nonce: &str, total: usize) -> usize {
    (0..total)
        .filter(|i| stdout.contains(&format!("{nonce}:{i}:pass")))
        .count()
}

fn failure_reason(out: &RunOutput, passed: usize, total: usize) -> String {
    match out.outcome {
        Outcome::Timeout => "timeout".into(),
        Outcome::OutputLimit => "output limit exceeded".into(),
        Outcome::Exited(c) if c != 0 => {
            let last = out
                .stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            let last: String = last.chars().take(200).collect();
            format!("exit code {c}: {last}")
        }
        Outcome::Exited(_) => format!("passed {passed}/{total}"),
    }
}

fn same_output(got: &str, want: &str) -> bool {
    let norm = |s: &str| {
        let lines: Vec<&str> = s.lines().map(str::trim_end).collect();
        let n = lines
            .iter()
            .rposition(|l| !l.is_empty())
            .map_or(0, |i| i + 1);
        lines[..n].join("\n")
    };
    norm(got) == norm(want)
}

/// A per-run random token (from the OS, falling back to time and a counter).
fn nonce() -> String {
    let mut bytes = [0u8; 12];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok();
    if !ok {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes.copy_from_slice(&t.to_le_bytes()[..12]);
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("AUGUR{hex}")
}
