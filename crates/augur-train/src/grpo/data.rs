//! Prompts and their references from a dataset (JSONL, Parquet or a Hub split, read by
//! [`augur_data::read_rows`]), and a seeded sampler over them whose whole state is one cursor
//! (so a checkpoint restores it exactly).

use std::path::Path;

use augur_data::RowAt;
use augur_reward::jsonl::{reference_of, suspicious_reference, TaskKind};
use augur_reward::Reference;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::template::PromptTemplate;
use crate::{Error, Result};

/// One training prompt: its text (before the chat template), what a completion is checked
/// against, and where it came from (for error messages).
#[derive(Clone, Debug)]
pub struct Prompt {
    pub text: String,
    pub reference: Reference,
    /// The file and line (JSONL) or row (Parquet) it came from.
    pub at: RowAt,
    /// The row's `id` field, if any.
    pub id: Option<String>,
}

impl Prompt {
    /// `FILE: line N (id X)` (or `row N`), for messages.
    pub fn origin(&self) -> String {
        let place = format!("{}: {}", self.at.file.display(), self.at.position);
        match &self.id {
            Some(id) => format!("{place} (id {id})"),
            None => place,
        }
    }
}

/// How a dataset line becomes a prompt and its reference.
#[derive(Clone, Debug)]
pub struct PromptSpec {
    /// Field holding the prompt text, used when there is no template.
    pub field: String,
    /// `[data] template`: builds the prompt from several fields, with instructions around them.
    pub template: Option<PromptTemplate>,
    /// Task of the verifier; decides which reference fields are read.
    pub task: TaskKind,
    /// `[reward] answer_field`: the math reference field (see [`reference_of`]).
    pub answer_field: Option<String>,
}

impl PromptSpec {
    /// The prompt text and reference of one row (`at`: where it came from).
    pub fn prompt_of(
        &self,
        obj: &Map<String, Value>,
        at: RowAt,
    ) -> std::result::Result<Prompt, String> {
        let text = match &self.template {
            Some(t) => t.render(obj)?,
            None => obj
                .get(&self.field)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("missing string field `{}`", self.field))?
                .to_string(),
        };
        let reference = reference_of(self.task, obj, self.answer_field.as_deref())?;
        let id = obj.get("id").map(|v| match v {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        });
        Ok(Prompt {
            text,
            reference,
            at,
            id,
        })
    }
}

/// Reads the dataset `path` (a JSONL or Parquet file, or `hub:org/name[@rev]:[config/]split`):
/// each row a JSON object with the prompt's and the task's reference fields. Warns once (naming
/// the row) when a math reference looks like a whole solution.
pub fn load_prompts(path: &Path, spec: &PromptSpec) -> Result<Vec<Prompt>> {
    let rows = augur_data::read_rows(path).map_err(|e| Error::Data(e.to_string()))?;
    let mut out = Vec::with_capacity(rows.len());
    let mut warned = false;
    for row in rows {
        let at = row.at.to_string();
        let prompt = spec
            .prompt_of(&row.fields, row.at)
            .map_err(|m| Error::Data(format!("{at}: {m}")))?;
        if !warned {
            if let Some(why) = suspicious_reference(&prompt.reference) {
                eprintln!("warning: {at}: {why}");
                warned = true;
            }
        }
        out.push(prompt);
    }
    if out.is_empty() {
        return Err(Error::Data(format!("{}: no prompts", path.display())));
    }
    Ok(out)
}

/// What to do with a prompt that leaves no room for `max_new_tokens` in the model's context:
/// `[data] too_long = "fail"` (the default) or `"skip"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TooLong {
    #[default]
    Fail,
    Skip,
}

/// The prompts of `path` that fit: `len(prompt) + max_new_tokens <= context`, with `tokens`
/// giving a prompt's length after templating. Under [`TooLong::Fail`] the first misfit is an
/// error naming file, line and id; under [`TooLong::Skip`] misfits are dropped and returned
/// beside the kept prompts (an error if nothing is left).
pub fn fitting_prompts(
    path: &Path,
    prompts: Vec<Prompt>,
    tokens: impl Fn(&Prompt) -> Result<usize>,
    context: usize,
    max_new_tokens: usize,
    policy: TooLong,
) -> Result<(Vec<Prompt>, Vec<Prompt>)> {
    let total = prompts.len();
    let (mut kept, mut skipped) = (Vec::with_capacity(total), Vec::new());
    for p in prompts {
        let n = tokens(&p)?;
        if n.saturating_add(max_new_tokens) <= context {
            kept.push(p);
            continue;
        }
        if policy == TooLong::Fail {
            return Err(Error::Data(format!(
                "{}: the prompt has {n} tokens; with max_new_tokens {max_new_tokens} it \
                 exceeds the model's context of {context} (set `[data] too_long = \"skip\"` to \
                 leave such prompts out)",
                p.origin()
            )));
        }
        skipped.push(p);
    }
    if kept.is_empty() {
        return Err(Error::Data(format!(
            "{}: all {total} prompts are too long for the model's context of {context} with \
             max_new_tokens {max_new_tokens}",
            path.display()
        )));
    }
    Ok((kept, skipped))
}

/// SplitMix64: tiny, seedable, and its state is one `u64`.
#[derive(Clone, Copy, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is negligible for dataset sizes).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Draws prompt indices without replacement within an epoch, in an order fixed by the seed and the
/// epoch number. `cursor` counts prompts drawn so far and is the sampler's whole state.
#[derive(Clone, Debug)]
pub struct ShuffledEpochs {
    len: usize,
    seed: u64,
    pub cursor: u64,
    order: Vec<usize>,
    order_epoch: Option<u64>,
}

impl ShuffledEpochs {
    pub fn new(len: usize, seed: u64, cursor: u64) -> Self {
        Self {
            len,
            seed,
            cursor,
            order: Vec::new(),
            order_epoch: None,
        }
    }

    /// The next `n` prompt indices.
    pub fn next_batch(&mut self, n: usize) -> Vec<usize> {
        (0..n).map(|_| self.next_index()).collect()
    }

    fn next_index(&mut self) -> usize {
        let epoch = self.cursor / self.len as u64;
        if self.order_epoch != Some(epoch) {
            self.order = (0..self.len).collect();
            let mut rng = SplitMix64(self.seed ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03));
            for i in (1..self.len).rev() {
                self.order.swap(i, rng.below(i + 1));
            }
            self.order_epoch = Some(epoch);
        }
        let i = self.order[(self.cursor % self.len as u64) as usize];
        self.cursor += 1;
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(line: usize, id: Option<&str>, text: &str) -> Prompt {
        Prompt {
            text: text.into(),
            reference: Reference::Math { answer: "1".into() },
            at: RowAt {
                file: Path::new("data/train.jsonl").into(),
                position: augur_data::Position::Line(line),
            },
            id: id.map(str::to_string),
        }
    }

    #[test]
    fn over_long_prompts_fail_naming_line_and_id_or_are_skipped() {
        let path = Path::new("data/train.jsonl");
        let make = || {
            vec![
                prompt(1, Some("a"), "xx"),
                prompt(3, Some("b"), "xxxxxxxxx"),
                prompt(4, None, "xxx"),
            ]
        };
        let chars = |p: &Prompt| Ok(p.text.len());
        let err = fitting_prompts(path, make(), chars, 12, 4, TooLong::Fail)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("data/train.jsonl: line 3 (id b)") && err.contains("9 tokens"),
            "{err}"
        );
        let (kept, skipped) = fitting_prompts(path, make(), chars, 12, 4, TooLong::Skip).unwrap();
        let lines = |ps: &[Prompt]| -> Vec<String> {
            ps.iter().map(|p| p.at.position.to_string()).collect()
        };
        assert_eq!(lines(&kept), ["line 1", "line 4"]);
        assert_eq!(skipped.len(), 1);
        // Exactly filling the context fits; nothing fitting is an error; no overflow.
        assert_eq!(
            fitting_prompts(path, make(), chars, 13, 4, TooLong::Fail)
                .unwrap()
                .0
                .len(),
            3
        );
        assert!(fitting_prompts(path, make(), chars, 5, 4, TooLong::Skip).is_err());
        assert!(fitting_prompts(path, make(), chars, 12, usize::MAX, TooLong::Skip).is_err());
    }

    #[test]
    fn bad_lines_are_named() {
        let spec = PromptSpec {
            field: "question".into(),
            template: None,
            task: TaskKind::Math,
            answer_field: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        std::fs::write(
            &path,
            b"{\"question\": \"q\", \"answer\": \"1\", \"id\": 7}\n\n{\"question\": \"\xff\"}\n",
        )
        .unwrap();
        let err = load_prompts(&path, &spec).unwrap_err().to_string();
        assert!(
            err.starts_with("dataset ") && err.contains("t.jsonl:3: not UTF-8"),
            "{err}"
        );
        std::fs::write(
            &path,
            "{\"question\": \"q\", \"answer\": \"1\", \"id\": 7}\n\n{\"answer\": \"2\"}\n",
        )
        .unwrap();
        let err = load_prompts(&path, &spec).unwrap_err().to_string();
        assert!(
            err.contains("t.jsonl:3: missing string field `question`"),
            "{err}"
        );
    }

    #[test]
    fn sampler_is_a_permutation_per_epoch_and_resumable() {
        let mut s = ShuffledEpochs::new(10, 7, 0);
        let mut first = s.next_batch(10);
        let again = s.next_batch(3);
        first.sort();
        assert_eq!(first, (0..10).collect::<Vec<_>>());
        let mut resumed = ShuffledEpochs::new(10, 7, 10);
        assert_eq!(resumed.next_batch(3), again);
    }
}
