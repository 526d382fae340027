//! Rendering chat messages into a prompt with the model's own Jinja template.
//!
//! HF templates are Jinja2 written for Python; minijinja with Python-compatible
//! string methods (`strip`, `startswith`, ...) renders them. Models without a
//! template fall back to ChatML:
//! `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then
//! `<|im_start|>assistant\n` when a generation prompt is asked for.

use minijinja::{Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::error::{Result, RolloutError};

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: "user".into(),
            content: content.into(),
        }
    }
}

/// The documented fallback template (ChatML).
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// Compiles `template` (or ChatML when `None`).
    pub fn new(
        template: Option<&str>,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
    ) -> Result<Self> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template_owned("chat", template.unwrap_or(CHATML_TEMPLATE).to_string())
            .map_err(|e| RolloutError::Template(e.to_string()))?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.unwrap_or_default().to_string(),
            eos_token: eos_token.unwrap_or_default().to_string(),
        })
    }

    /// Renders `messages`; `add_generation_prompt` opens the assistant turn.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        if messages.is_empty() {
            return Err(RolloutError::Request(
                "a chat prompt needs at least one message".into(),
            ));
        }
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| RolloutError::Template(e.to_string()))?;
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        })
        .map_err(|e| RolloutError::Template(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_fallback() {
        let t = ChatTemplate::new(None, None, None).unwrap();
        let s = t.render(&[Message::user("hi")], true).unwrap();
        assert_eq!(s, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn python_string_methods_and_raise_exception() {
        let t = ChatTemplate::new(
            Some("{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}{{ bos_token }}{{ messages[0].content.strip() }}"),
            Some("<s>"),
            None,
        )
        .unwrap();
        assert_eq!(t.render(&[Message::user("  x ")], false).unwrap(), "<s>x");
        let err = t
            .render(
                &[Message {
                    role: "system".into(),
                    content: "s".into(),
                }],
                false,
            )
            .unwrap_err();
        assert!(err.to_string().contains("first must be user"));
    }
}
