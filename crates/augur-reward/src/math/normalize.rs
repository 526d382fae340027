//! String-level cleanup of a LaTeX answer before it is parsed: delimiters, spacing macros, `\text{}` noise, units,
//! degrees, dollar signs, thousands separators. The output is still LaTeX-ish text, but with one spelling per
//! meaning, so two answers equal after `normalize` are equivalent without parsing.

/// A normalized answer plus the facts that were stripped off and matter for comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    /// The cleaned text, with no whitespace (for string comparison).
    pub text: String,
    /// The cleaned text with whitespace runs kept as one space (for parsing: `\\log_2 8` is not `\\log_{28}`).
    pub spaced: String,
    /// A `%` was removed: the value may be read as `x/100`.
    pub percent: bool,
}

/// Units dropped when they follow a quantity (`5 cm`, `\text{ dollars}`, `15\mbox{ cm}^2`).
const UNITS: &[&str] = &[
    "units", "unit", "sq", "square", "cubic", "cm", "mm", "km", "m", "meters", "meter", "metres",
    "inches", "inch", "in", "feet", "foot", "ft", "yards", "yard", "miles", "mile", "mph",
    "dollars", "dollar", "cents", "cent", "degrees", "degree", "radians", "hours", "hour",
    "minutes", "minute", "seconds", "second", "days", "day", "weeks", "week", "years", "year",
    "pounds", "pound", "lbs", "kg", "grams", "gram", "g", "liters", "liter", "ml", "people",
    "students", "points", "ways", "times", "percent", "mins", "hrs", "sec",
];

/// Normalizes an answer string (see module doc).
pub fn normalize(raw: &str) -> Normalized {
    let mut s = raw.trim().to_string();
    // Outer math delimiters.
    for (a, b) in [("\\[", "\\]"), ("\\(", "\\)"), ("$$", "$$")] {
        if s.starts_with(a) && s.ends_with(b) && s.len() >= a.len() + b.len() {
            s = s[a.len()..s.len() - b.len()].to_string();
        }
    }
    s = s.trim_end_matches(['.', ' ']).to_string();
    // Protect the row separator `\\\\` from the `\\ ` (space) rule below.
    const ROW: &str = "\u{1}";
    s = s.replace("\\\\", ROW);
    for (from, to) in [
        ("\\left", ""),
        ("\\right", ""),
        ("\\bigl", ""),
        ("\\bigr", ""),
        ("\\big", ""),
        ("\\Big", ""),
        ("\\displaystyle", ""),
        ("\\!", ""),
        ("\\,", " "),
        ("\\;", " "),
        ("\\:", " "),
        ("\\quad", " "),
        ("\\qquad", " "),
        ("\\ ", " "),
        ("~", " "),
        ("{,}", ","),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\cfrac", "\\frac"),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("\\circ", ""),
        ("\\degree", ""),
        ("°", ""),
        ("\\$", ""),
        ("$", ""),
        ("\\le ", "\\leq "),
        ("\\ge ", "\\geq "),
        ("\\neq", "\\ne"),
        ("\\dots", ""),
        ("\\ldots", ""),
        ("\\cdots", ""),
        ("−", "-"),
        ("×", "\\times"),
        ("÷", "\\div"),
        ("π", "\\pi"),
        ("∞", "\\infty"),
        ("√", "\\sqrt"),
    ] {
        if s.contains(from) {
            s = s.replace(from, to);
        }
    }
    s = s.replace(ROW, " \\\\ ");
    let mut percent = false;
    if s.contains('%') {
        percent = true;
        s = s.replace("\\%", "").replace('%', "");
    }
    s = unwrap_text_macros(&s);
    s = strip_units(&s);
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let thousands = strip_thousands(&compact);
    let spaced = if thousands != compact {
        thousands.clone()
    } else {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    Normalized {
        text: thousands.trim_end_matches('.').to_string(),
        spaced: spaced.trim_end_matches(['.', ' ']).to_string(),
        percent,
    }
}

/// Replaces `\text{X}`, `\mathrm{X}`, `\mbox{X}`, `\textbf{X}`... by ` X `.
fn unwrap_text_macros(s: &str) -> String {
    const MACROS: &[&str] = &[
        "\\text",
        "\\textbf",
        "\\textit",
        "\\mathrm",
        "\\mathbf",
        "\\mathit",
        "\\mbox",
        "\\textrm",
        "\\operatorname",
        "\\boldsymbol",
        "\\mathsf",
    ];
    let mut out = s.to_string();
    for _ in 0..16 {
        let mut changed = false;
        for m in MACROS {
            let mut search_from = 0;
            while let Some(rel) = out[search_from..].find(m) {
                let pos = search_from + rel;
                let after = pos + m.len();
                // Must be the whole macro name (`\text` not `\textbf`).
                if out[after..].starts_with(|c: char| c.is_ascii_alphabetic()) {
                    search_from = after;
                    continue;
                }
                let open = after + out[after..].len() - out[after..].trim_start().len();
                if !out[open..].starts_with('{') {
                    search_from = after;
                    continue;
                }
                let Some(close) = super::extract::matching_brace(&out, open) else {
                    break;
                };
                let inner = out[open + 1..close].to_string();
                out = format!("{} {} {}", &out[..pos], inner, &out[close + 1..]);
                changed = true;
                search_from = pos;
            }
        }
        if !changed {
            break;
        }
    }
    out
}

/// Drops unit words that follow something else (a lone word such as "m" stays, it may be the answer).
fn strip_units(s: &str) -> String {
    let words: Vec<&str> = s.split_whitespace().collect();
    if words.len() < 2 {
        return s.to_string();
    }
    // `12 apples`: a plain number followed only by words.
    let numeric = |w: &str| {
        w.bytes().any(|b| b.is_ascii_digit())
            && w.bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b',' || b == b'-')
    };
    if numeric(words[0])
        && words[1..].iter().all(|w| {
            w.len() >= 2
                && w.trim_end_matches(['.', ','])
                    .bytes()
                    .all(|b| b.is_ascii_alphabetic())
        })
    {
        return words[0].to_string();
    }
    let mut kept: Vec<&str> = Vec::with_capacity(words.len());
    let mut dropped_prev = false;
    for (i, w) in words.iter().enumerate() {
        let bare = w.trim_end_matches(['.', ',']);
        let base = bare.split('^').next().unwrap_or(bare).to_ascii_lowercase();
        let after_number = kept.iter().any(|k| k.chars().any(|c| c.is_ascii_digit()));
        // A unit word, or the exponent of one just dropped (`inches ^2`).
        if (i > 0 && UNITS.contains(&base.as_str()) && after_number)
            || (dropped_prev && w.starts_with('^'))
        {
            dropped_prev = true;
            continue;
        }
        dropped_prev = false;
        kept.push(w);
    }
    kept.join(" ")
}

/// `58,500` -> `58500` and `11,111,111,100` -> `11111111100` when the whole answer is one such number.
fn strip_thousands(s: &str) -> String {
    let body = s.trim_start_matches('-');
    let parts: Vec<&str> = body.split(',').collect();
    if parts.len() < 2 {
        return s.to_string();
    }
    let first_ok =
        !parts[0].is_empty() && parts[0].len() <= 3 && parts[0].bytes().all(|b| b.is_ascii_digit());
    let last = parts[parts.len() - 1];
    let last_int = last.split('.').next().unwrap_or("");
    let last_ok = last_int.len() == 3
        && last_int.bytes().all(|b| b.is_ascii_digit())
        && last[3..]
            .strip_prefix('.')
            .is_none_or(|f| f.bytes().all(|b| b.is_ascii_digit()));
    let mid_ok = parts[1..parts.len() - 1]
        .iter()
        .all(|p| p.len() == 3 && p.bytes().all(|b| b.is_ascii_digit()));
    if first_ok && mid_ok && last_ok {
        s.replace(',', "")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_noise() {
        assert_eq!(normalize("\\$32,\\!348").text, "32348");
        assert_eq!(normalize("864 \\mbox{ inches}^2").text, "864");
        assert_eq!(
            normalize("\\frac{270}7\\text{ degrees}").text,
            "\\frac{270}7"
        );
        assert_eq!(normalize("90^\\circ").text, "90");
        assert_eq!(normalize("\\text{(C)}").text, "(C)");
        assert!(normalize("10\\%").percent);
        assert_eq!(normalize("1,-2").text, "1,-2");
        assert_eq!(normalize("3, 5, 7").text, "3,5,7");
        assert_eq!(
            normalize("\\left( 3, \\frac{\\pi}{2} \\right)").text,
            "(3,\\frac{\\pi}{2})"
        );
        assert_eq!(normalize("5.4 \\text{ cents}").text, "5.4");
    }
}
