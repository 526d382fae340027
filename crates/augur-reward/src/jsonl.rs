//! Scoring a JSONL file of completions: the library behind `augur score --task T --input IN --output OUT`.
//!
//! Every input line is a JSON object with a `completion` string and the reference fields of its task:
//! * `math`: the field named by `answer_field` when given; otherwise `final` when present, else
//!   `answer` (LaTeX or plain). A GSM8K-style worked solution ending in `#### x` yields `x`, so a
//!   file whose `answer` is the whole solution still has the right reference;
//! * `countdown`: `numbers` (array of integers) and `target` (integer);
//! * `code`, one of: `test` + `entry_point` (+ optional `prompt`) for HumanEval; `test_list` (+ optional
//!   `test_setup_code` or `test_imports`) or `asserts` for MBPP-style asserts; `cases` (array of
//!   `{"input", "output"}`) or `inputs` + `outputs` (arrays of strings) for stdin/stdout.
//!
//! Each line is written back with all its fields plus `extracted` (string or null), `reward` (number),
//! `correct` (bool), `verdict` (`"correct"` or `"wrong"`) and `reason` (e.g. `"no boxed answer"`, `"timeout"`).
//! Blank lines are skipped; a malformed line is an error naming its line number.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value};

use crate::code::{CodeOptions, CodeVerifier};
use crate::countdown::{CountdownOptions, CountdownVerifier};
use crate::error::RewardError;
use crate::math::{MathOptions, MathVerifier};
use crate::reference::{CodeTests, IoCase, Reference};
use crate::verifier::Verifier;

/// The task family of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// Final-answer math.
    Math,
    /// Countdown arithmetic.
    Countdown,
    /// Python programs run against tests.
    Code,
}

impl std::str::FromStr for TaskKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "math" => Ok(TaskKind::Math),
            "countdown" => Ok(TaskKind::Countdown),
            "code" => Ok(TaskKind::Code),
            other => Err(format!(
                "unknown task '{other}' (expected math, countdown or code)"
            )),
        }
    }
}

/// Options for every verifier; only the one of the chosen task is used.
#[derive(Debug, Clone, Default)]
pub struct ScoreOptions {
    /// Math extraction options.
    pub math: MathOptions,
    /// Countdown rules.
    pub countdown: CountdownOptions,
    /// Sandbox, workers and reward mode for code.
    pub code: CodeOptions,
}

/// Totals over a scored file.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreSummary {
    /// Lines scored.
    pub total: usize,
    /// Lines judged correct.
    pub correct: usize,
    /// Mean reward.
    pub mean_reward: f64,
    /// At most one warning about references that look like whole solutions, naming the line.
    pub warnings: Vec<String>,
}

/// Builds the verifier for a task (probing the sandbox for `code`).
pub fn verifier_for(task: TaskKind, opts: &ScoreOptions) -> Result<Box<dyn Verifier>, RewardError> {
    Ok(match task {
        TaskKind::Math => Box::new(MathVerifier::new(opts.math)),
        TaskKind::Countdown => Box::new(CountdownVerifier::new(opts.countdown)),
        TaskKind::Code => Box::new(CodeVerifier::new(opts.code.clone())?),
    })
}

/// Scores every line of `input` and writes the annotated lines to `output` (see the module doc).
/// `answer_field` names the math reference field (see [`reference_of`]).
pub fn score_jsonl(
    task: TaskKind,
    input: &Path,
    output: &Path,
    answer_field: Option<&str>,
    opts: &ScoreOptions,
) -> Result<ScoreSummary, RewardError> {
    let text = fs::read_to_string(input).map_err(|e| RewardError::io(input, e))?;
    let mut rows: Vec<(Map<String, Value>, String, Reference)> = Vec::new();
    let mut warnings = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| RewardError::BadLine {
            path: input.to_path_buf(),
            line: i + 1,
            message,
        };
        let obj: Map<String, Value> =
            serde_json::from_str(line).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let completion = obj
            .get("completion")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("missing string field 'completion'".into()))?
            .to_string();
        let reference = reference_of(task, &obj, answer_field).map_err(bad)?;
        if warnings.is_empty() {
            if let Some(why) = suspicious_reference(&reference) {
                warnings.push(format!("{}:{}: {why}", input.display(), i + 1));
            }
        }
        rows.push((obj, completion, reference));
    }
    let verifier = verifier_for(task, opts)?;
    let items: Vec<(&str, &Reference)> = rows.iter().map(|(_, c, r)| (c.as_str(), r)).collect();
    let scores = verifier.score_batch(&items);
    let total = items.len();
    drop(items);
    let mut out = Vec::new();
    let (mut correct, mut sum) = (0usize, 0f64);
    for ((mut obj, _, _), s) in rows.into_iter().zip(scores) {
        correct += s.correct as usize;
        sum += s.reward as f64;
        obj.insert(
            "extracted".into(),
            s.extracted.map_or(Value::Null, Value::String),
        );
        obj.insert("reward".into(), Value::from(s.reward as f64));
        obj.insert("correct".into(), Value::Bool(s.correct));
        obj.insert(
            "verdict".into(),
            Value::from(if s.correct { "correct" } else { "wrong" }),
        );
        obj.insert("reason".into(), Value::String(s.reason));
        serde_json::to_writer(&mut out, &obj).map_err(|e| RewardError::io(output, e.into()))?;
        out.push(b'\n');
    }
    fs::File::create(output)
        .and_then(|mut f| f.write_all(&out))
        .map_err(|e| RewardError::io(output, e))?;
    Ok(ScoreSummary {
        total,
        correct,
        mean_reward: if total > 0 { sum / total as f64 } else { 0.0 },
        warnings,
    })
}

/// Reads the reference fields of one line for `task`.
///
/// Math: `answer_field` names the reference field when given (a missing field is an error);
/// otherwise `final` is preferred, then `answer`. Either way a GSM8K-style solution ending in
/// `#### x` yields `x`: GSM8K's `answer` is the whole worked solution, and taking it as the
/// reference made every completion wrong.
pub fn reference_of(
    task: TaskKind,
    obj: &Map<String, Value>,
    answer_field: Option<&str>,
) -> Result<Reference, String> {
    let str_field = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
    let str_list = |k: &str| -> Option<Vec<String>> {
        obj.get(k)?
            .as_array()?
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    match task {
        TaskKind::Math => {
            let (key, value) = match answer_field {
                Some(k) => (k, obj.get(k)),
                None => ["final", "answer"]
                    .into_iter()
                    .find_map(|k| obj.get(k).map(|v| (k, Some(v))))
                    .unwrap_or(("final' or 'answer", None)),
            };
            let answer = match value {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(_) => return Err(format!("field '{key}' must be a string or a number")),
                None => return Err(format!("missing field '{key}' (string or number)")),
            };
            Ok(Reference::Math {
                answer: final_answer_of_solution(&answer).unwrap_or(answer),
            })
        }
        TaskKind::Countdown => {
            let numbers = obj
                .get("numbers")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().map(Value::as_i64).collect::<Option<Vec<_>>>())
                .ok_or("missing integer array 'numbers'")?;
            let target = obj
                .get("target")
                .and_then(Value::as_i64)
                .ok_or("missing integer 'target'")?;
            Ok(Reference::Countdown { numbers, target })
        }
        TaskKind::Code => {
            if let (Some(test), Some(entry_point)) = (str_field("test"), str_field("entry_point")) {
                let prompt = str_field("prompt").unwrap_or_default();
                return Ok(Reference::Code(CodeTests::HumanEval {
                    prompt,
                    test,
                    entry_point,
                }));
            }
            if let Some(asserts) = str_list("test_list").or_else(|| str_list("asserts")) {
                let mut setup = str_field("test_setup_code").unwrap_or_default();
                if let Some(imports) = str_list("test_imports") {
                    setup = format!("{}\n{setup}", imports.join("\n"));
                }
                return Ok(Reference::Code(CodeTests::Asserts { setup, asserts }));
            }
            if let Some(cases) = obj.get("cases") {
                let cases: Vec<IoCase> = serde_json::from_value(cases.clone())
                    .map_err(|e| format!("bad 'cases': {e}"))?;
                return Ok(Reference::Code(CodeTests::StdIo { cases }));
            }
            if let (Some(ins), Some(outs)) = (str_list("inputs"), str_list("outputs")) {
                if ins.len() != outs.len() {
                    return Err("'inputs' and 'outputs' differ in length".into());
                }
                let cases = ins
                    .into_iter()
                    .zip(outs)
                    .map(|(input, output)| IoCase { input, output })
                    .collect();
                return Ok(Reference::Code(CodeTests::StdIo { cases }));
            }
            Err(
                "no tests: expected test+entry_point, test_list/asserts, cases, or inputs+outputs"
                    .into(),
            )
        }
    }
}

/// The `x` of a GSM8K-style worked solution that ends in `#### x`.
fn final_answer_of_solution(text: &str) -> Option<String> {
    let (_, tail) = text.rsplit_once("####")?;
    let tail = tail.trim();
    (!tail.is_empty()).then(|| tail.to_string())
}

/// Why a math reference looks like a whole worked solution rather than a final answer (long, or
/// several lines, with several numbers), or `None`. Callers warn once per file with the line,
/// since such a reference makes nearly every completion score 0.
pub fn suspicious_reference(reference: &Reference) -> Option<String> {
    let Reference::Math { answer } = reference else {
        return None;
    };
    let numbers = answer
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .count();
    let long = answer.chars().count() > 80 || answer.contains('\n');
    (long && numbers >= 3).then(|| {
        let head: String = answer.chars().take(60).collect();
        format!(
            "the reference answer looks like a whole solution ({numbers} numbers, {} chars: \"{head}…\"); \
             name the final-answer field with `answer_field` (config `[reward] answer_field`, or \
             `augur score --answer-field`)",
            answer.chars().count()
        )
    })
}
