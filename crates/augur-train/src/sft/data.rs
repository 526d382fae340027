//! Training examples from JSONL: each line becomes token ids plus a per-token flag saying
//! whether the loss is taken on that token. Only completion / assistant tokens are flagged:
//! the prompt (chat template, system and user turns) conditions the model but is not learnt.
//!
//! An example is built from text segments, each tokenised on its own and flagged as a whole:
//! prompt-completion lines give `[prompt (no loss), completion (loss)]` plus the
//! end-of-sequence id (loss: the model must learn to stop); chat lines give the rendered
//! template split at each assistant turn (found by rendering the conversation up to the turn
//! with and without it).

use std::path::Path;

use augur_model::TokenizerBundle;
use augur_rollout::{ChatTemplate, Message};
use serde_json::{Map, Value};

use super::config::{DataFormat, SftDataSection};
use crate::{Error, Result};

/// One tokenised example.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub ids: Vec<u32>,
    /// `trainable[i]`: token `i` is a completion / assistant token (the loss predicts it).
    pub trainable: Vec<bool>,
    /// Cut at `max_seq_len`.
    pub truncated: bool,
}

impl Example {
    /// Tokens whose prediction the loss counts (trainable tokens after the first position).
    pub fn target_count(&self) -> usize {
        self.trainable.iter().skip(1).filter(|&&t| t).count()
    }
}

/// What loading a file did besides producing examples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataStats {
    /// Lines read (non-empty).
    pub lines: usize,
    /// Examples cut at `max_seq_len` (kept).
    pub truncated: usize,
    /// Examples left with no completion token after the cut (dropped).
    pub dropped: usize,
}

/// How lines become token segments: the tokenizer, its chat template and the `[data]` fields.
pub struct Encoder<'a> {
    pub tok: &'a TokenizerBundle,
    pub template: &'a ChatTemplate,
    pub cfg: &'a SftDataSection,
}

impl Encoder<'_> {
    /// Reads `path` (a JSONL or Parquet file, or `hub:org/name[@rev]:[config/]split`, see
    /// [`augur_data::read_rows`]). Errors name the file, the line or row and the field.
    pub fn load(&self, path: &Path) -> Result<(Vec<Example>, DataStats)> {
        let rows = augur_data::read_rows(path).map_err(|e| Error::Config(e.to_string()))?;
        let mut out = Vec::new();
        let mut stats = DataStats::default();
        for row in rows {
            stats.lines += 1;
            let ex = self
                .example(&row.fields)
                .map_err(|m| Error::Config(format!("{}: {m}", row.at)))?;
            match ex.target_count() {
                0 => stats.dropped += 1,
                _ => {
                    stats.truncated += usize::from(ex.truncated);
                    out.push(ex);
                }
            }
        }
        if stats.lines == 0 {
            return Err(Error::Config(format!(
                "{}: no examples (the file is empty)",
                path.display()
            )));
        }
        if out.is_empty() {
            return Err(Error::Config(format!(
                "{}: every example was left without completion tokens by data.max_seq_len = {}",
                path.display(),
                self.cfg.max_seq_len
            )));
        }
        Ok((out, stats))
    }

    /// One line's example; the error names the field.
    pub fn example(&self, obj: &Map<String, Value>) -> std::result::Result<Example, String> {
        let segments = match self.cfg.format {
            DataFormat::PromptCompletion => self.prompt_completion(obj)?,
            DataFormat::Messages => self.chat(obj)?,
        };
        let (mut ids, mut trainable) = (Vec::new(), Vec::new());
        for (text, train) in segments {
            let seg = self.tok.encode(&text).map_err(|e| e.to_string())?;
            trainable.extend(std::iter::repeat_n(train, seg.len()));
            ids.extend(seg);
        }
        if self.cfg.format == DataFormat::PromptCompletion {
            if let Some(&eos) = self.tok.eos_ids.first() {
                ids.push(eos);
                trainable.push(true);
            }
        }
        Ok(cut(ids, trainable, self.cfg.max_seq_len))
    }

    fn prompt_completion(
        &self,
        obj: &Map<String, Value>,
    ) -> std::result::Result<Vec<(String, bool)>, String> {
        let field = |name: &str| {
            obj.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("missing string field `{name}`"))
        };
        let prompt = field(&self.cfg.prompt_field)?;
        let completion = field(&self.cfg.completion_field)?;
        let prompt = match self.cfg.raw {
            true => prompt,
            false => self
                .template
                .render(&[Message::user(prompt)], true)
                .map_err(|e| format!("field `{}`: {e}", self.cfg.prompt_field))?,
        };
        Ok(vec![(prompt, false), (completion, true)])
    }

    fn chat(&self, obj: &Map<String, Value>) -> std::result::Result<Vec<(String, bool)>, String> {
        let name = &self.cfg.messages_field;
        let value = obj
            .get(name)
            .ok_or_else(|| format!("missing field `{name}`"))?;
        let messages: Vec<Message> = serde_json::from_value(value.clone())
            .map_err(|e| format!("field `{name}`: expected [{{role, content}}, ...]: {e}"))?;
        if !messages.iter().any(|m| m.role == "assistant") {
            return Err(format!("field `{name}`: no assistant message to learn"));
        }
        let render = |m: &[Message], open: bool| {
            self.template
                .render(m, open)
                .map_err(|e| format!("field `{name}`: {e}"))
        };
        let mut segments = Vec::new();
        let mut done = 0; // bytes of the rendered chat already in `segments`
        for (i, m) in messages.iter().enumerate() {
            if m.role != "assistant" {
                continue;
            }
            if i == 0 {
                return Err(format!(
                    "field `{name}`[0]: a chat must open with a non-assistant turn"
                ));
            }
            let before = render(&messages[..i], true)?;
            let with = render(&messages[..=i], false)?;
            if !with.starts_with(&before) || before.len() < done {
                return Err(format!(
                    "field `{name}`[{i}]: the chat template does not render this turn as an extension of the earlier ones"
                ));
            }
            segments.push((before[done..].to_string(), false));
            segments.push((with[before.len()..].to_string(), true));
            done = with.len();
        }
        Ok(segments
            .into_iter()
            .filter(|(t, _)| !t.is_empty())
            .collect())
    }
}

/// Cuts an example at `max_len` tokens (at the end: the prompt is kept whole when it fits).
fn cut(mut ids: Vec<u32>, mut trainable: Vec<bool>, max_len: usize) -> Example {
    let truncated = ids.len() > max_len;
    ids.truncate(max_len);
    trainable.truncate(max_len);
    Example {
        ids,
        trainable,
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;

    const VOCAB: [&str; 12] = [
        "<unk>",
        "<eos>",
        "user",
        "assistant",
        ":",
        "|",
        "a",
        "b",
        "c",
        "d",
        "e",
        "f",
    ];
    const TEMPLATE: &str = "{% for m in messages %}{{ m.role }}: {{ m.content }} | {% endfor %}\
        {% if add_generation_prompt %}assistant: {% endif %}";

    /// One id per word of `VOCAB`; EOS is id 1.
    fn tokenizer() -> TokenizerBundle {
        let vocab = VOCAB
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let wl = WordLevel::builder()
            .vocab(vocab)
            .unk_token("<unk>".into())
            .build()
            .unwrap();
        let mut tokenizer = tokenizers::Tokenizer::new(wl);
        tokenizer.with_pre_tokenizer(Some(Whitespace {}));
        TokenizerBundle {
            tokenizer,
            chat_template: Some(TEMPLATE.into()),
            bos_token: None,
            eos_token: Some("<eos>".into()),
            eos_ids: vec![1],
            pad_id: 0,
        }
    }

    fn encode(line: &str, cfg: SftDataSection) -> std::result::Result<Example, String> {
        let tok = tokenizer();
        let template = ChatTemplate::new(Some(TEMPLATE), None, Some("<eos>")).unwrap();
        let enc = Encoder {
            tok: &tok,
            template: &template,
            cfg: &cfg,
        };
        enc.example(&serde_json::from_str(line).unwrap())
    }

    fn ids(words: &str) -> Vec<u32> {
        words
            .split(' ')
            .map(|w| VOCAB.iter().position(|v| *v == w).unwrap() as u32)
            .collect()
    }

    #[test]
    fn prompt_completion_trains_on_the_completion_and_eos_only() {
        let line = r#"{"question": "a b", "answer": "c d"}"#;
        let ex = encode(line, SftDataSection::default()).unwrap();
        // "user: a b | assistant: " (template, no loss) + "c d" + EOS (loss).
        assert_eq!(ex.ids, ids("user : a b | assistant : c d <eos>"));
        let flags: Vec<bool> = (0..10).map(|i| i >= 7).collect();
        assert_eq!(ex.trainable, flags);
        assert_eq!(ex.target_count(), 3);
        // Raw prompts skip the template; other field names come from the config.
        let raw = SftDataSection {
            raw: true,
            prompt_field: "p".into(),
            completion_field: "c".into(),
            ..Default::default()
        };
        let ex = encode(r#"{"p": "a", "c": "b"}"#, raw.clone()).unwrap();
        assert_eq!(
            (ex.ids, ex.trainable),
            (ids("a b <eos>"), vec![false, true, true])
        );
        let err = encode(r#"{"p": "a"}"#, raw).unwrap_err();
        assert!(err.contains("`c`"), "{err}");
    }

    #[test]
    fn chats_train_on_every_assistant_turn_only() {
        let cfg = SftDataSection {
            format: DataFormat::Messages,
            ..Default::default()
        };
        let line = r#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b c"},
                      {"role": "user", "content": "d"}, {"role": "assistant", "content": "e"}]}"#;
        let ex = encode(line, cfg.clone()).unwrap();
        let want: Vec<(&str, bool)> = vec![
            ("user : a | assistant :", false),
            ("b c |", true),
            ("user : d | assistant :", false),
            ("e |", true),
        ];
        let (mut w_ids, mut w_flags) = (Vec::new(), Vec::new());
        for (words, train) in want {
            let seg = ids(words);
            w_flags.extend(std::iter::repeat_n(train, seg.len()));
            w_ids.extend(seg);
        }
        assert_eq!(ex.ids, w_ids);
        assert_eq!(ex.trainable, w_flags);
        for (bad, field) in [
            (
                r#"{"messages": [{"role": "user", "content": "a"}]}"#,
                "no assistant message",
            ),
            (r#"{"messages": "a"}"#, "field `messages`"),
            (r#"{"chat": []}"#, "missing field `messages`"),
            (
                r#"{"messages": [{"role": "assistant", "content": "a"}]}"#,
                "`messages`[0]",
            ),
        ] {
            let err = encode(bad, cfg.clone()).unwrap_err();
            assert!(err.contains(field), "{bad}: {err}");
        }
    }

    #[test]
    fn cut_counts_and_keeps_the_head() {
        let ex = cut(vec![1, 2, 3, 4, 5], vec![false, false, true, true, true], 4);
        assert!(ex.truncated);
        assert_eq!(ex.ids, [1, 2, 3, 4]);
        assert_eq!(ex.target_count(), 2);
        let ex = cut(vec![1, 2, 3], vec![false, true, true], 3);
        assert!(!ex.truncated);
        // The first token is never a target (nothing predicts it).
        assert_eq!(cut(vec![1], vec![true], 4).target_count(), 0);
    }
}
