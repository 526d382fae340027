//! Finding the final answer inside a free-form completion.
//!
//! Tried in order, first hit wins:
//! 1. the last `\boxed{...}` or `\fbox{...}` (balanced braces; `\boxed 5` without braces too);
//! 2. the last `<answer>...</answer>` block;
//! 3. the last GSM8K-style `#### x` line;
//! 4. the last "the (final) answer is x" phrase (up to the end of the sentence or line);
//! 5. fallback, only when enabled: the last number in the text. It is on by default because GSM8K-style models
//!    often just end with the number, but it rewards lucky guesses, so RL runs may want it off.

/// How an answer was found, reported in the score's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `\boxed{}` or `\fbox{}`.
    Boxed,
    /// `<answer>` tag.
    AnswerTag,
    /// `#### x`.
    Hashes,
    /// "The answer is x".
    Phrase,
    /// Last number in the text.
    LastNumber,
}

/// Extracts the final answer from `text`; `last_number_fallback` enables rule 5.
pub fn extract_answer(text: &str, last_number_fallback: bool) -> Option<(String, Source)> {
    if let Some(b) = last_boxed(text) {
        return Some((b, Source::Boxed));
    }
    if let Some(a) = last_tag(text, "answer") {
        return Some((a, Source::AnswerTag));
    }
    if let Some(h) = last_hashes(text) {
        return Some((h, Source::Hashes));
    }
    if let Some(p) = answer_phrase(text) {
        return Some((p, Source::Phrase));
    }
    if last_number_fallback {
        if let Some(n) = last_number(text) {
            return Some((n, Source::LastNumber));
        }
    }
    None
}

/// Content of the last `\boxed{..}`/`\fbox{..}` with balanced braces, or `None`.
pub fn last_boxed(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut best: Option<(usize, String)> = None;
    for pat in ["\\boxed", "\\fbox"] {
        let Some(start) = text.rfind(pat) else {
            continue;
        };
        if best.as_ref().is_some_and(|(s, _)| *s > start) {
            continue;
        }
        let mut i = start + pat.len();
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'{' {
            if let Some(end) = matching_brace(text, i) {
                best = Some((start, text[i + 1..end].trim().to_string()));
            }
        } else if i > start + pat.len() {
            // `\boxed 5`: the token up to whitespace or `$`.
            let rest = &text[i..];
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '$')
                .unwrap_or(rest.len());
            if end > 0 {
                best = Some((start, rest[..end].to_string()));
            }
        }
    }
    best.map(|(_, s)| s)
}

/// Index of the `}` matching the `{` at `open`, skipping escaped braces `\{` `\}`.
pub fn matching_brace(text: &str, open: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = open;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Content of the last `<tag>...</tag>`, trimmed; a `\boxed{}` inside wins over the raw content.
pub fn last_tag(text: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let end = text.rfind(&close)?;
    let start = text[..end].rfind(&open)? + open.len();
    let inner = text[start..end].trim();
    if let Some(b) = last_boxed(inner) {
        return Some(b);
    }
    let inner = inner.trim_matches('$').trim();
    (!inner.is_empty()).then(|| inner.to_string())
}

fn last_hashes(text: &str) -> Option<String> {
    let pos = text.rfind("####")?;
    let rest = text[pos + 4..].lines().next().unwrap_or("").trim();
    let rest = rest.trim_end_matches('.').trim();
    (!rest.is_empty()).then(|| rest.to_string())
}

fn answer_phrase(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let pos = lower.rfind("answer is")?;
    let mut rest = text[pos + "answer is".len()..].trim_start();
    rest = rest.trim_start_matches(':').trim_start();
    let line = rest.lines().next().unwrap_or("");
    // End of sentence: a period followed by space/end (not a decimal point).
    let b = line.as_bytes();
    let mut end = line.len();
    for (i, &c) in b.iter().enumerate() {
        if c == b'.' && b.get(i + 1).is_none_or(|n| n.is_ascii_whitespace()) {
            end = i;
            break;
        }
    }
    let ans = line[..end].trim().trim_matches('$').trim();
    let ans = ans.trim_end_matches(['.', ',', ';']).trim();
    (!ans.is_empty()).then(|| ans.to_string())
}

/// The last number (optionally signed, with thousands commas and decimals) in the text.
pub fn last_number(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut i = b.len();
    while i > 0 {
        i -= 1;
        if b[i].is_ascii_digit() {
            let end = i + 1;
            let mut start = i;
            while start > 0 {
                let c = b[start - 1];
                let comma_group = c == b','
                    && start >= 2
                    && b[start - 2].is_ascii_digit()
                    && b[start..].iter().take_while(|d| d.is_ascii_digit()).count() == 3;
                let decimal_point = c == b'.' && start >= 2 && b[start - 2].is_ascii_digit();
                if c.is_ascii_digit() || comma_group || decimal_point {
                    start -= 1;
                } else {
                    break;
                }
            }
            if start > 0 && b[start - 1] == b'-' {
                start -= 1;
            }
            return Some(text[start..end].replace(',', ""));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxed_nested_and_last() {
        let t = r"first \boxed{1} then \boxed{\frac{1}{2}} end";
        assert_eq!(last_boxed(t).unwrap(), r"\frac{1}{2}");
        assert_eq!(last_boxed(r"\fbox{7}").unwrap(), "7");
        assert_eq!(last_boxed(r"so $\boxed 5$.").unwrap(), "5");
        assert_eq!(last_boxed(r"\boxed{\{1,2\}}").unwrap(), r"\{1,2\}");
        assert!(last_boxed(r"\boxed{unclosed").is_none());
    }

    #[test]
    fn other_sources() {
        assert_eq!(extract_answer("x\n#### 1,234", false).unwrap().0, "1,234");
        assert_eq!(
            extract_answer("<answer> 3 + 4 </answer>", false).unwrap().0,
            "3 + 4"
        );
        assert_eq!(
            extract_answer("So the answer is $3.5$. Done", false)
                .unwrap()
                .0,
            "3.5"
        );
        assert_eq!(last_number("we get -1,200.5 apples").unwrap(), "-1200.5");
        assert!(extract_answer("no numbers 7 here", false).is_none());
    }
}
