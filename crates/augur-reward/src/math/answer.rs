//! The shape of an answer above single expressions: tuples, intervals, sets, unions, matrices, relations
//! (`x = 3`, `x \in [1,2]`), `\pm` pairs and multiple-choice letters.

use super::expr::{parse_expr, split_digit_args, Expr};
use super::lexer::{lex, Tok};

/// A parsed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// One expression.
    Expr(Expr),
    /// Ordered items in brackets: a tuple/point `(1,2)` or interval `[1,2)`; `open` is ' ' for a bare list.
    Seq {
        /// Opening bracket, or ' ' for a bare comma list.
        open: char,
        /// Closing bracket, or ' '.
        close: char,
        /// The items.
        items: Vec<Answer>,
    },
    /// Unordered items: `\{1,2\}` and `a \pm b`.
    Set(Vec<Answer>),
    /// `A \cup B`, unordered.
    Union(Vec<Answer>),
    /// `\begin{pmatrix} .. \end{pmatrix}` as rows of cells.
    Matrix(Vec<Vec<Answer>>),
    /// `lhs op rhs` with op one of `=`, `in`, `<`, `>`, `<=`, `>=`, `!=`.
    Rel(String, Box<Answer>, Box<Answer>),
    /// A multiple-choice letter A–E.
    Choice(char),
}

/// Parses a normalized answer string; `None` when it is not mathematics (then it is compared as text).
pub fn parse_answer(norm: &str) -> Option<Answer> {
    if let Some(c) = choice_letter(norm) {
        return Some(Answer::Choice(c));
    }
    let toks = split_digit_args(lex(norm)?);
    parse_toks(&toks, 0)
}

/// `C`, `(C)`, `C)`, `(C)25`-style answers with a letter A–E.
pub fn choice_letter(s: &str) -> Option<char> {
    let t = s.trim();
    let t = t.strip_prefix('(').unwrap_or(t);
    let mut it = t.chars();
    let c = it.next()?;
    let rest: String = it.collect();
    let ok_rest = rest.is_empty()
        || rest == ")"
        || rest.starts_with(')') && rest.len() > 1 && s.starts_with('(');
    (('A'..='E').contains(&c) && ok_rest).then_some(c)
}

fn parse_toks(t: &[Tok], depth: usize) -> Option<Answer> {
    if t.is_empty() || depth > 32 {
        return None;
    }
    // Relations, loosest first.
    for (op, names) in [
        ("=", &[Tok::Op('=')][..]),
        ("in", &[Tok::Cmd("in".into())][..]),
        ("<=", &[Tok::Cmd("leq".into())][..]),
        (">=", &[Tok::Cmd("geq".into())][..]),
        ("!=", &[Tok::Cmd("ne".into())][..]),
        ("<", &[Tok::Op('<'), Tok::Cmd("lt".into())][..]),
        (">", &[Tok::Op('>'), Tok::Cmd("gt".into())][..]),
    ] {
        let parts = split_top(t, |x| names.contains(x));
        if parts.len() == 2 {
            let lhs = parse_toks(parts[0], depth + 1)?;
            let rhs = parse_toks(parts[1], depth + 1)?;
            return Some(Answer::Rel(op.into(), Box::new(lhs), Box::new(rhs)));
        }
    }
    let parts = split_top(t, |x| *x == Tok::Cmd("cup".into()));
    if parts.len() > 1 {
        let items = parts
            .iter()
            .map(|p| parse_toks(p, depth + 1))
            .collect::<Option<_>>()?;
        return Some(Answer::Union(items));
    }
    let parts = split_top(t, |x| *x == Tok::Op(',') || *x == Tok::Op(';'));
    if parts.len() > 1 {
        let items = parts
            .iter()
            .map(|p| parse_toks(p, depth + 1))
            .collect::<Option<_>>()?;
        return Some(Answer::Seq {
            open: ' ',
            close: ' ',
            items,
        });
    }
    if let Some(m) = matrix(t, depth) {
        return Some(m);
    }
    if let (Some(Tok::Open(o)), Some(Tok::Close(c))) = (t.first(), t.last()) {
        if matching_close(t, 0) == Some(t.len() - 1) {
            let inner = &t[1..t.len() - 1];
            let parts = split_top(inner, |x| *x == Tok::Op(','));
            if *o == 'S' {
                if inner.is_empty() {
                    return Some(Answer::Set(vec![]));
                }
                let items = parts
                    .iter()
                    .map(|p| parse_toks(p, depth + 1))
                    .collect::<Option<_>>()?;
                return Some(Answer::Set(flatten_pm(items)));
            }
            if parts.len() > 1 && *o != '{' {
                let items = parts
                    .iter()
                    .map(|p| parse_toks(p, depth + 1))
                    .collect::<Option<_>>()?;
                return Some(Answer::Seq {
                    open: *o,
                    close: *c,
                    items,
                });
            }
            if *o == '{' {
                return parse_toks(inner, depth + 1);
            }
        }
    }
    // `a \pm b` / `a \mp b`.
    let pm = split_top(t, |x| {
        *x == Tok::Cmd("pm".into()) || *x == Tok::Cmd("mp".into())
    });
    if pm.len() == 2 {
        let mut plus = pm[0].to_vec();
        plus.push(Tok::Op('+'));
        plus.extend_from_slice(pm[1]);
        let mut minus = pm[0].to_vec();
        minus.push(Tok::Op('-'));
        minus.extend_from_slice(pm[1]);
        let a = parse_expr(&plus)?;
        let b = parse_expr(&minus)?;
        return Some(Answer::Set(vec![Answer::Expr(a), Answer::Expr(b)]));
    }
    parse_expr(t).map(Answer::Expr)
}

/// `\{1 \pm \sqrt5, -2\}` has three members: a `\pm` item inside a set contributes both of its values.
fn flatten_pm(items: Vec<Answer>) -> Vec<Answer> {
    items
        .into_iter()
        .flat_map(|a| match a {
            Answer::Set(inner) => inner,
            other => vec![other],
        })
        .collect()
}

/// Index of the token closing the bracket opened at `open` (brackets of any kind count, so `(3,4]` works).
fn matching_close(t: &[Tok], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, x) in t.iter().enumerate().skip(open) {
        match x {
            Tok::Open(_) => depth += 1,
            Tok::Close(_) => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits at separators that are outside any bracket (and outside `|..|` pairs).
fn split_top(t: &[Tok], is_sep: impl Fn(&Tok) -> bool) -> Vec<&[Tok]> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, x) in t.iter().enumerate() {
        match x {
            Tok::Open(_) => depth += 1,
            Tok::Close(_) => depth -= 1,
            Tok::Cmd(c) if c == "begin" => depth += 1,
            Tok::Cmd(c) if c == "end" => depth -= 1,
            _ if depth == 0 && is_sep(x) => {
                parts.push(&t[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&t[start..]);
    parts
}

/// `\begin{pmatrix} a & b \\ c & d \end{pmatrix}` (any matrix environment).
fn matrix(t: &[Tok], depth: usize) -> Option<Answer> {
    if t.first() != Some(&Tok::Cmd("begin".into())) {
        return None;
    }
    let env_close = matching_close(t, 1)?;
    let end_pos = t.iter().rposition(|x| *x == Tok::Cmd("end".into()))?;
    if matching_close(t, end_pos + 1)? != t.len() - 1 {
        return None;
    }
    let body = &t[env_close + 1..end_pos];
    let mut rows = Vec::new();
    for row in split_top(body, |x| *x == Tok::RowSep) {
        if row.is_empty() {
            continue;
        }
        let cells = split_top(row, |x| *x == Tok::Op('&'))
            .iter()
            .map(|c| parse_toks(c, depth + 1))
            .collect::<Option<Vec<_>>>()?;
        rows.push(cells);
    }
    Some(Answer::Matrix(rows))
}
