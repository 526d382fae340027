//! Tokens of a normalized LaTeX answer.

use num_bigint::BigInt;
use num_rational::BigRational;

/// One lexical unit.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A decimal literal, held exactly; `int` tells it had no point or exponent.
    Num { value: BigRational, int: bool },
    /// A single-letter variable (or a Greek letter name).
    Ident(String),
    /// A known LaTeX command without its backslash (`frac`, `sqrt`, `pi`, `sin`...).
    Cmd(String),
    /// One of `+ - * / ^ _ ! = , | & < >`.
    Op(char),
    /// An opening bracket: `(`, `[`, `{`, or `S` for `\{`.
    Open(char),
    /// A closing bracket: `)`, `]`, `}`, or `S` for `\}`.
    Close(char),
    /// `\\`, the matrix row separator.
    RowSep,
}

/// Commands the parser understands; an unknown `\name` is split into the longest known prefix plus letters
/// (normalization removes spaces, so `\cot x` arrives as `\cotx`).
const COMMANDS: &[&str] = &[
    "frac",
    "sqrt",
    "pi",
    "infty",
    "inf",
    "cdot",
    "times",
    "div",
    "pm",
    "mp",
    "sin",
    "cos",
    "tan",
    "cot",
    "sec",
    "csc",
    "arcsin",
    "arccos",
    "arctan",
    "sinh",
    "cosh",
    "tanh",
    "ln",
    "log",
    "exp",
    "binom",
    "cup",
    "cap",
    "in",
    "leq",
    "geq",
    "ne",
    "lt",
    "gt",
    "begin",
    "end",
    "alpha",
    "beta",
    "gamma",
    "delta",
    "theta",
    "lambda",
    "mu",
    "phi",
    "rho",
    "sigma",
    "tau",
    "omega",
    "emptyset",
    "varnothing",
    "setminus",
    "approx",
    "neg",
    "lfloor",
    "rfloor",
    "lceil",
    "rceil",
    "vert",
    "mid",
    "choose",
    "varphi",
    "epsilon",
    "to",
];

/// Splits `s` into tokens; `None` on a character the grammar has no use for.
pub fn lex(s: &str) -> Option<Vec<Tok>> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch.is_ascii_digit()
            || (ch == '.' && c.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let (tok, next) = lex_number(&c, i)?;
            out.push(tok);
            i = next;
        } else if ch.is_ascii_alphabetic() {
            out.push(Tok::Ident(ch.to_string()));
            i += 1;
        } else if ch == '\\' {
            i += 1;
            let start = i;
            while i < c.len() && c[i].is_ascii_alphabetic() {
                i += 1;
            }
            if i == start {
                // Escaped symbol: \{ \} \\ \| \%.
                let sym = *c.get(i)?;
                i += 1;
                match sym {
                    '{' => out.push(Tok::Open('S')),
                    '}' => out.push(Tok::Close('S')),
                    '\\' => out.push(Tok::RowSep),
                    '|' => out.push(Tok::Op('|')),
                    _ => return None,
                }
                continue;
            }
            let name: String = c[start..i].iter().collect();
            if COMMANDS.contains(&name.as_str()) {
                out.push(Tok::Cmd(name));
            } else {
                let prefix = COMMANDS
                    .iter()
                    .filter(|k| name.starts_with(*k))
                    .max_by_key(|k| k.len())?;
                out.push(Tok::Cmd(prefix.to_string()));
                for l in name[prefix.len()..].chars() {
                    out.push(Tok::Ident(l.to_string()));
                }
            }
        } else {
            let t = match ch {
                '+' | '-' | '*' | '/' | '^' | '_' | '!' | '=' | ',' | '|' | '&' | '<' | '>'
                | ':' | ';' => Tok::Op(ch),
                '(' | '[' | '{' => Tok::Open(ch),
                ')' | ']' | '}' => Tok::Close(ch),
                '\'' => Tok::Op('\''),
                _ => return None,
            };
            out.push(t);
            i += 1;
        }
    }
    Some(out)
}

/// Lexes `123`, `1.5`, `.25`, `2e-3`, `1.5E10` exactly.
fn lex_number(c: &[char], start: usize) -> Option<(Tok, usize)> {
    let mut i = start;
    let mut digits = String::new();
    let mut frac_len = 0u32;
    let mut seen_point = false;
    while i < c.len() && (c[i].is_ascii_digit() || (c[i] == '.' && !seen_point)) {
        if c[i] == '.' {
            // A trailing point with no digit after it is punctuation, not part of the number.
            if !c.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                break;
            }
            seen_point = true;
        } else {
            digits.push(c[i]);
            if seen_point {
                frac_len += 1;
            }
        }
        i += 1;
    }
    let mut exp: i64 = 0;
    let mut has_exp = false;
    if i < c.len() && (c[i] == 'e' || c[i] == 'E') {
        let mut j = i + 1;
        let neg = c.get(j) == Some(&'-');
        if c.get(j) == Some(&'-') || c.get(j) == Some(&'+') {
            j += 1;
        }
        let es = j;
        while j < c.len() && c[j].is_ascii_digit() {
            j += 1;
        }
        if j > es && j - es <= 4 {
            let e: i64 = c[es..j].iter().collect::<String>().parse().ok()?;
            exp = if neg { -e } else { e };
            has_exp = true;
            i = j;
        }
    }
    let mantissa: BigInt = digits.parse().ok()?;
    let mut value = BigRational::new(mantissa, BigInt::from(10u32).pow(frac_len));
    if exp != 0 {
        let p = BigRational::from_integer(BigInt::from(10u32).pow(exp.unsigned_abs() as u32));
        value = if exp > 0 { value * p } else { value / p };
    }
    let int = !seen_point && !has_exp;
    Some((Tok::Num { value, int }, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexes() {
        let t = lex("\\frac{1}{2}+x^2").unwrap();
        assert_eq!(t[0], Tok::Cmd("frac".into()));
        assert_eq!(t.len(), 11);
        let t = lex("\\cotx").unwrap();
        assert_eq!(t, vec![Tok::Cmd("cot".into()), Tok::Ident("x".into())]);
        match &lex("1.5e3").unwrap()[0] {
            Tok::Num { value, int } => {
                assert_eq!(*value, BigRational::from_integer(1500.into()));
                assert!(!int);
            }
            _ => panic!(),
        }
        assert!(lex("\\unknowncmd").is_none());
    }
}
