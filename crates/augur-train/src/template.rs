//! Prompt templates: `{field}` placeholders filled from the fields of a dataset line, as TRL and
//! verl recipes build task prompts (e.g. `"{question}\nPut the final answer in \\boxed{}."`).
//!
//! `{name}` with `name` an identifier (`[A-Za-z_][A-Za-z0-9_]*`) is a placeholder, and `{{` / `}}`
//! stand for literal braces. Every other brace is literal text, so `\boxed{}` or `\frac{1}{2}`
//! need no escaping; `\frac{{a}}{{b}}` writes `\frac{a}{b}`.
//!
//! A field may hold a string, a number, or a list of them: a list of numbers is written
//! `[3, 42, 87]` (Countdown's `numbers`), a list of strings one per line (MBPP's `test_list`).

use serde_json::{Map, Value};

/// A parsed template: literal text and field names in order.
#[derive(Clone, Debug, PartialEq)]
pub struct PromptTemplate {
    pieces: Vec<Piece>,
}

#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Text(String),
    Field(String),
}

impl PromptTemplate {
    /// Parses `text`. A template without any placeholder is an error: it would send the same
    /// prompt for every line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            literal.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            if rest[open..].starts_with("{{") || rest[open..].starts_with("}}") {
                literal.push_str(&rest[open..=open]);
                rest = &after[1..];
                continue;
            }
            let name_len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let name = &after[..name_len];
            let is_field = rest[open..].starts_with('{')
                && after[name_len..].starts_with('}')
                && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
            if is_field {
                if !literal.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Field(name.to_string()));
                rest = &after[name_len + 1..];
            } else {
                literal.push_str(&rest[open..=open]);
                rest = after;
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        if !pieces.iter().any(|p| matches!(p, Piece::Field(_))) {
            return Err(format!(
                "template {text:?} has no `{{field}}` placeholder, so every prompt would be the same"
            ));
        }
        Ok(Self { pieces })
    }

    /// The template filled from `line`. A missing field, or one that is not a string or number,
    /// is an error naming it.
    pub fn render(&self, line: &Map<String, Value>) -> Result<String, String> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(name) => match line.get(name) {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(Value::Number(n)) => out.push_str(&n.to_string()),
                    Some(Value::Array(items)) if items.iter().all(Value::is_number) => {
                        let items: Vec<String> = items.iter().map(Value::to_string).collect();
                        out.push_str(&format!("[{}]", items.join(", ")));
                    }
                    Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
                        let items: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                        out.push_str(&items.join("\n"));
                    }
                    Some(_) => {
                        return Err(format!(
                            "template field `{name}` must be a string, a number, or a list of \
                             strings or of numbers"
                        ))
                    }
                    None => return Err(format!("missing field `{name}` named by the template")),
                },
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn fills_fields_and_keeps_latex_braces() {
        let t = PromptTemplate::parse("{question}\nPut the final answer in \\boxed{}. {x_1}{n}")
            .unwrap();
        let got = t
            .render(&line(r#"{"question": "1+1?", "x_1": "a{b}", "n": 7}"#))
            .unwrap();
        assert_eq!(got, "1+1?\nPut the final answer in \\boxed{}. a{b}7");
        // `{1}`, `{ q}` and an unclosed `{q` are text; doubled braces are literal braces.
        let t = PromptTemplate::parse("{q} {1} { q} \\frac{{a}}{{b}} {{q}} {q").unwrap();
        assert_eq!(
            t.render(&line(r#"{"q": "Q", "a": "no"}"#)).unwrap(),
            "Q {1} { q} \\frac{a}{b} {q} {q"
        );
    }

    #[test]
    fn lists_render_as_countdown_and_mbpp_prompts_show_them() {
        let t = PromptTemplate::parse("Use {numbers} to make {target}.\n{tests}").unwrap();
        let got = t
            .render(&line(
                r#"{"numbers": [3, 42, 87], "target": 42, "tests": ["assert f(1) == 2", "assert f(2) == 3"]}"#,
            ))
            .unwrap();
        assert_eq!(
            got,
            "Use [3, 42, 87] to make 42.\nassert f(1) == 2\nassert f(2) == 3"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let t = PromptTemplate::parse("Solve: {problem}").unwrap();
        let err = t.render(&line(r#"{"question": "x"}"#)).unwrap_err();
        assert!(err.contains("`problem`"), "{err}");
        let err = t.render(&line(r#"{"problem": [1, "a"]}"#)).unwrap_err();
        assert!(err.contains("`problem`"), "{err}");
        let err = t.render(&line(r#"{"problem": {"a": 1}}"#)).unwrap_err();
        assert!(err.contains("`problem`"), "{err}");
        assert!(PromptTemplate::parse("no fields \\boxed{}").is_err());
    }
}
