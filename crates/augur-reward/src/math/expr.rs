//! Arithmetic expressions: a recursive-descent parser over [`Tok`]s and the AST it builds.
//!
//! Grammar (loosest first): sum := product (('+'|'-') product)*; product := unary (('*'|'/'|`\cdot`|`\times`|
//! `\div`|implicit) unary)*; unary := ('-'|'+') unary | power; power := postfix ('^' unary)?; postfix := primary
//! '!'*. Primaries: numbers, variables, brackets, `|x|`, `\frac{a}{b}` (also `\frac12`), `\sqrt[n]{x}`, `\pi`,
//! `\infty`, `\binom{n}{k}`, functions (`\sin x`, `\ln(x)`, `\log_b x`). An integer followed by a `\frac` of two
//! integers is a mixed number (`2\frac12` = 5/2). Subscripts on numbers are base markers and are ignored
//! (`52_8` reads 52); on variables they become part of the name (`x_1`).

use num_rational::BigRational;

use super::lexer::Tok;

/// A parsed arithmetic expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// An exact number.
    Num(BigRational),
    /// A named variable.
    Var(String),
    /// π.
    Pi,
    /// ∞.
    Inf,
    /// Negation.
    Neg(Box<Expr>),
    /// A binary operation: one of `+ - * / ^`.
    Bin(char, Box<Expr>, Box<Expr>),
    /// A unary function (`sin`, `ln`, `sqrt`, `abs`, `fact`, ...).
    Func(String, Box<Expr>),
    /// `\sqrt[n]{x}` as (n, x).
    Root(Box<Expr>, Box<Expr>),
    /// `\log_b x` as (b, x).
    Log(Box<Expr>, Box<Expr>),
    /// `\binom{n}{k}`.
    Binom(Box<Expr>, Box<Expr>),
}

const FUNCS: &[&str] = &[
    "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
    "ln", "exp",
];

/// Parses a whole token slice as one expression; `None` if tokens remain or the syntax is broken.
pub fn parse_expr(toks: &[Tok]) -> Option<Expr> {
    let mut p = Parser {
        t: toks,
        i: 0,
        depth: 0,
    };
    let e = p.sum()?;
    (p.i == toks.len()).then_some(e)
}

struct Parser<'a> {
    t: &'a [Tok],
    i: usize,
    depth: usize,
}

fn bin(op: char, a: Expr, b: Expr) -> Expr {
    Expr::Bin(op, Box::new(a), Box::new(b))
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }

    fn eat_op(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Op(c)) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn eat_cmd(&mut self, name: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Cmd(n)) if n == name) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn sum(&mut self) -> Option<Expr> {
        self.depth += 1;
        if self.depth > 200 {
            return None;
        }
        let mut lhs = self.product()?;
        loop {
            if self.eat_op('+') {
                lhs = bin('+', lhs, self.product()?);
            } else if self.eat_op('-') {
                lhs = bin('-', lhs, self.product()?);
            } else {
                break;
            }
        }
        self.depth -= 1;
        Some(lhs)
    }

    fn product(&mut self) -> Option<Expr> {
        let mut lhs = self.unary()?;
        loop {
            if self.eat_op('*') || self.eat_cmd("cdot") || self.eat_cmd("times") {
                lhs = bin('*', lhs, self.unary()?);
            } else if self.eat_op('/') || self.eat_cmd("div") {
                lhs = bin('/', lhs, self.unary()?);
            } else if self.starts_primary() {
                let rhs = self.power()?;
                lhs = match (&lhs, &rhs) {
                    (Expr::Num(a), Expr::Bin('/', n, d))
                        if a.is_integer() && is_int(n) && is_int(d) =>
                    {
                        // Mixed number: 2\frac{1}{2}.
                        bin('+', lhs, rhs)
                    }
                    (Expr::Neg(a), Expr::Bin('/', n, d)) if is_int(a) && is_int(n) && is_int(d) => {
                        // Negative mixed number: -1\frac{1}{2} = -(1 + 1/2).
                        bin('-', lhs, rhs)
                    }
                    _ => bin('*', lhs, rhs),
                };
            } else {
                break;
            }
        }
        Some(lhs)
    }

    fn starts_primary(&self) -> bool {
        match self.peek() {
            Some(Tok::Num { .. }) | Some(Tok::Ident(_)) => true,
            Some(Tok::Open(c)) => *c != 'S',
            Some(Tok::Cmd(c)) => {
                matches!(
                    c.as_str(),
                    "frac" | "sqrt" | "pi" | "infty" | "inf" | "binom" | "log"
                ) || FUNCS.contains(&c.as_str())
                    || is_greek(c)
            }
            _ => false,
        }
    }

    fn unary(&mut self) -> Option<Expr> {
        self.depth += 1;
        if self.depth > 200 {
            return None;
        }
        let e = self.unary_inner();
        self.depth -= 1;
        e
    }

    fn unary_inner(&mut self) -> Option<Expr> {
        if self.eat_op('-') {
            return Some(Expr::Neg(Box::new(self.unary()?)));
        }
        if self.eat_op('+') {
            return self.unary();
        }
        self.power()
    }

    fn power(&mut self) -> Option<Expr> {
        let base = self.postfix()?;
        if self.eat_op('^') {
            let exp = self.exponent()?;
            return Some(bin('^', base, exp));
        }
        Some(base)
    }

    /// The exponent after `^`: a braced group, or a single signed primary (`x^2y` is `x^2 * y`).
    fn exponent(&mut self) -> Option<Expr> {
        self.depth += 1;
        if self.depth > 200 {
            return None;
        }
        let e = self.exponent_inner();
        self.depth -= 1;
        e
    }

    fn exponent_inner(&mut self) -> Option<Expr> {
        if self.eat_op('-') {
            return Some(Expr::Neg(Box::new(self.exponent()?)));
        }
        let base = if let Some(Tok::Num { value, .. }) = self.peek() {
            // `x^23` in LaTeX is x^2 * 3 only with braces missing by mistake; take the whole literal.
            let v = value.clone();
            self.i += 1;
            Expr::Num(v)
        } else {
            self.postfix()?
        };
        if self.eat_op('^') {
            return Some(bin('^', base, self.exponent()?));
        }
        Some(base)
    }

    fn postfix(&mut self) -> Option<Expr> {
        let mut e = self.primary()?;
        loop {
            if self.eat_op('!') {
                e = Expr::Func("fact".into(), Box::new(e));
            } else if self.eat_op('\'') {
                if let Expr::Var(n) = &mut e {
                    n.push('\'');
                } else {
                    return None;
                }
            } else if self.eat_op('_') {
                let sub = self.group_or_token()?;
                match &mut e {
                    Expr::Var(n) => {
                        n.push('_');
                        n.push_str(&format!("{sub:?}"));
                    }
                    Expr::Num(_) => {} // base marker: 52_8
                    _ => return None,
                }
            } else {
                return Some(e);
            }
        }
    }

    /// A `{...}` group, or a single token's primary (used by `\frac`, `\sqrt`, subscripts).
    fn group_or_token(&mut self) -> Option<Expr> {
        if self.peek()? == &Tok::Open('{') {
            self.i += 1;
            let e = self.sum()?;
            (self.peek() == Some(&Tok::Close('}'))).then(|| self.i += 1)?;
            return Some(e);
        }
        match self.peek()?.clone() {
            Tok::Num { value, .. } => {
                self.i += 1;
                Some(Expr::Num(value))
            }
            Tok::Ident(n) => {
                self.i += 1;
                Some(Expr::Var(n))
            }
            _ => self.primary(),
        }
    }

    fn bracketed(&mut self, open: char) -> Option<Expr> {
        let close = match open {
            '(' => ')',
            '[' => ']',
            _ => '}',
        };
        let e = self.sum()?;
        (self.peek() == Some(&Tok::Close(close))).then(|| self.i += 1)?;
        Some(e)
    }

    fn primary(&mut self) -> Option<Expr> {
        let tok = self.peek()?.clone();
        self.i += 1;
        match tok {
            Tok::Num { value, .. } => Some(Expr::Num(value)),
            Tok::Ident(n) => Some(Expr::Var(n)),
            Tok::Open(c) if c != 'S' => self.bracketed(c),
            Tok::Op('|') => {
                let e = self.sum()?;
                self.eat_op('|').then_some(())?;
                Some(Expr::Func("abs".into(), Box::new(e)))
            }
            Tok::Cmd(c) => self.command(&c),
            _ => None,
        }
    }

    fn command(&mut self, c: &str) -> Option<Expr> {
        match c {
            "pi" => Some(Expr::Pi),
            "infty" | "inf" => Some(Expr::Inf),
            "frac" => {
                let n = self.group_or_token()?;
                let d = self.group_or_token()?;
                Some(bin('/', n, d))
            }
            "binom" => {
                let n = self.group_or_token()?;
                let k = self.group_or_token()?;
                Some(Expr::Binom(Box::new(n), Box::new(k)))
            }
            "sqrt" => {
                if self.peek() == Some(&Tok::Open('[')) {
                    self.i += 1;
                    let n = self.bracketed('[')?;
                    let x = self.group_or_token()?;
                    return Some(Expr::Root(Box::new(n), Box::new(x)));
                }
                let x = self.group_or_token()?;
                Some(Expr::Func("sqrt".into(), Box::new(x)))
            }
            "log" => {
                let base = if self.eat_op('_') {
                    self.group_or_token()?
                } else {
                    Expr::Num(BigRational::from_integer(10.into()))
                };
                let x = self.func_arg()?;
                Some(Expr::Log(Box::new(base), Box::new(x)))
            }
            "lfloor" | "lceil" => {
                let e = self.sum()?;
                let close = if c == "lfloor" { "rfloor" } else { "rceil" };
                self.eat_cmd(close).then_some(())?;
                let f = if c == "lfloor" { "floor" } else { "ceil" };
                Some(Expr::Func(f.into(), Box::new(e)))
            }
            f if FUNCS.contains(&f) => {
                // `\sin^2 x` is (sin x)^2.
                let pow = if self.eat_op('^') {
                    Some(self.exponent()?)
                } else {
                    None
                };
                let arg = self.func_arg()?;
                let e = Expr::Func(f.into(), Box::new(arg));
                Some(match pow {
                    Some(p) => bin('^', e, p),
                    None => e,
                })
            }
            g if is_greek(g) => Some(Expr::Var(g.into())),
            _ => None,
        }
    }

    /// A function argument: a bracketed group, or a power-level term (`\sin x`, `\ln 2`).
    fn func_arg(&mut self) -> Option<Expr> {
        self.power()
    }
}

fn is_int(e: &Expr) -> bool {
    matches!(e, Expr::Num(v) if v.is_integer())
}

fn is_greek(name: &str) -> bool {
    matches!(
        name,
        "alpha"
            | "beta"
            | "gamma"
            | "delta"
            | "theta"
            | "lambda"
            | "mu"
            | "phi"
            | "rho"
            | "sigma"
            | "tau"
            | "omega"
            | "varphi"
            | "epsilon"
    )
}

/// Splits multi-digit integer literals that are single-token arguments of `\frac`, `\sqrt` and `\binom`
/// (`\frac12` is 1/2, `\sqrt23` is sqrt(2)*3), as LaTeX reads them.
pub fn split_digit_args(toks: Vec<Tok>) -> Vec<Tok> {
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        let nargs: usize = match &toks[i] {
            Tok::Cmd(c) if c == "frac" || c == "binom" => 2,
            Tok::Cmd(c) if c == "sqrt" => 1,
            _ => 0,
        };
        out.push(toks[i].clone());
        i += 1;
        let mut left = nargs;
        while left > 0 && i < toks.len() {
            match &toks[i] {
                Tok::Num { value, int: true }
                    if value.is_integer() && value.to_integer().to_string().len() > 1 =>
                {
                    let digits = value.to_integer().to_string();
                    let (first, rest) = digits.split_at(1);
                    out.push(num_tok(first));
                    // The remainder may be the second argument, or a factor after the command.
                    let rest_tok = num_tok(rest);
                    if left == 2 && rest.len() > 1 {
                        let (r1, r2) = rest.split_at(1);
                        out.push(num_tok(r1));
                        out.push(num_tok(r2));
                        left = 0;
                    } else {
                        out.push(rest_tok);
                        left = left.saturating_sub(2);
                    }
                    i += 1;
                }
                Tok::Open('{') => {
                    // Copy the balanced group as is.
                    let mut depth = 0usize;
                    while i < toks.len() {
                        match &toks[i] {
                            Tok::Open('{') => depth += 1,
                            Tok::Close('}') => depth = depth.saturating_sub(1),
                            _ => {}
                        }
                        out.push(toks[i].clone());
                        i += 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    left -= 1;
                }
                _ => {
                    if left > 0 && matches!(toks[i], Tok::Num { .. } | Tok::Ident(_)) {
                        out.push(toks[i].clone());
                        i += 1;
                        left -= 1;
                    } else {
                        left = 0;
                    }
                }
            }
        }
    }
    out
}

fn num_tok(d: &str) -> Tok {
    let v: i64 = d.parse().unwrap_or(0);
    Tok::Num {
        value: BigRational::from_integer(v.into()),
        int: true,
    }
}
