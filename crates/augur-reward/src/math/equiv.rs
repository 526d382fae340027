//! Deciding whether two answers are the same mathematical object.
//!
//! Numbers are compared exactly over the rationals when both sides allow it (so `0.333` ≠ `1/3`), otherwise as
//! floats to a relative 1e-9 (`2\sqrt5` = `\sqrt{20}`). Expressions with variables are compared at 8
//! pseudo-random points (relative 1e-6), so `(a+5)(b+2)` = `ab+2a+5b+10`. Sets, `\pm` pairs, unions and bare
//! comma lists (lists of solutions) are order-insensitive; tuples, intervals and matrices are ordered, and an
//! interval's brackets must match. `x = 3` matches `3`, and equations match when their sides' differences are
//! proportional.

use std::collections::{BTreeSet, HashMap};

use num_rational::BigRational;

use super::answer::Answer;
use super::eval::{close, exact, numeric, vars};
use super::expr::Expr;

/// Structural equivalence of two parsed answers.
pub fn answers_equal(a: &Answer, b: &Answer) -> bool {
    use Answer::*;
    match (a, b) {
        (Choice(x), Choice(y)) => x == y,
        (Expr(x), Expr(y)) => exprs_equal(x, y),
        (
            Seq {
                open: o1,
                close: c1,
                items: i1,
            },
            Seq {
                open: o2,
                close: c2,
                items: i2,
            },
        ) => {
            if *o1 == ' ' && *o2 == ' ' {
                multiset_equal(i1, i2)
            } else if *o1 == ' ' || *o2 == ' ' || (o1 == o2 && c1 == c2) {
                ordered_equal(i1, i2)
            } else {
                false
            }
        }
        (Set(x), Set(y)) | (Union(x), Union(y)) => multiset_equal(x, y),
        (
            Set(x),
            Seq {
                open: ' ', items, ..
            },
        )
        | (
            Seq {
                open: ' ', items, ..
            },
            Set(x),
        ) => multiset_equal(x, items),
        (Matrix(x), Matrix(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(r, s)| ordered_equal(r, s))
        }
        (
            Matrix(m),
            Seq {
                open: '(', items, ..
            },
        )
        | (
            Seq {
                open: '(', items, ..
            },
            Matrix(m),
        ) => {
            m.iter().all(|r| r.len() == 1)
                && ordered_equal(&m.iter().map(|r| r[0].clone()).collect::<Vec<_>>(), items)
        }
        (Rel(op1, l1, r1), Rel(op2, l2, r2)) => {
            if op1 != op2 {
                return false;
            }
            if let (Some(v1), Some(v2)) = (single_var(l1), single_var(l2)) {
                if v1 == v2 {
                    return answers_equal(r1, r2);
                }
            }
            if op1 == "=" {
                if let (Expr(a1), Expr(b1), Expr(a2), Expr(b2)) = (&**l1, &**r1, &**l2, &**r2) {
                    return equations_equal(a1, b1, a2, b2);
                }
            }
            answers_equal(l1, l2) && answers_equal(r1, r2)
        }
        (Rel(op, l, r), other) | (other, Rel(op, l, r)) => {
            (op == "=" || op == "in") && single_var(l).is_some() && answers_equal(r, other)
        }
        _ => false,
    }
}

fn has_inf(e: &Expr) -> bool {
    match e {
        Expr::Inf => true,
        Expr::Num(_) | Expr::Var(_) | Expr::Pi => false,
        Expr::Neg(a) | Expr::Func(_, a) => has_inf(a),
        Expr::Bin(_, a, b) | Expr::Root(a, b) | Expr::Log(a, b) | Expr::Binom(a, b) => {
            has_inf(a) || has_inf(b)
        }
    }
}

fn single_var(a: &Answer) -> Option<&str> {
    match a {
        Answer::Expr(Expr::Var(n)) => Some(n),
        _ => None,
    }
}

fn ordered_equal(x: &[Answer], y: &[Answer]) -> bool {
    x.len() == y.len() && x.iter().zip(y).all(|(a, b)| answers_equal(a, b))
}

fn multiset_equal(x: &[Answer], y: &[Answer]) -> bool {
    if x.len() != y.len() {
        return false;
    }
    let mut used = vec![false; y.len()];
    x.iter().all(|a| {
        let hit = (0..y.len()).find(|&j| !used[j] && answers_equal(a, &y[j]));
        hit.map(|j| used[j] = true).is_some()
    })
}

/// Exact, then numeric, then random-point comparison of two expressions.
pub fn exprs_equal(a: &Expr, b: &Expr) -> bool {
    if a == b {
        return true;
    }
    if let (Some(x), Some(y)) = (exact(a), exact(b)) {
        return x == y;
    }
    let mut names = BTreeSet::new();
    vars(a, &mut names);
    vars(b, &mut names);
    if names.is_empty() {
        let empty = HashMap::new();
        let (x, y) = (numeric(a, &empty), numeric(b, &empty));
        // Infinities only count when written as `\\infty`; an overflow or a division by zero is no answer.
        let finite = x.is_finite() && y.is_finite();
        let infinite = x.is_infinite() && y.is_infinite() && has_inf(a) && has_inf(b);
        return (finite || infinite) && close(x, y, 1e-9);
    }
    agree_at_points(&names, |env| (numeric(a, env), numeric(b, env)))
}

/// `a1 = b1` and `a2 = b2` describe the same solution set when `a1-b1` is a constant non-zero multiple of `a2-b2`.
fn equations_equal(a1: &Expr, b1: &Expr, a2: &Expr, b2: &Expr) -> bool {
    let mut names = BTreeSet::new();
    for e in [a1, b1, a2, b2] {
        vars(e, &mut names);
    }
    let mut ratio: Option<f64> = None;
    agree_at_points(&names, |env| {
        let d1 = numeric(a1, env) - numeric(b1, env);
        let d2 = numeric(a2, env) - numeric(b2, env);
        if d1 == 0.0 && d2 == 0.0 {
            return (0.0, 0.0);
        }
        let k = d1 / d2;
        if !k.is_finite() || k == 0.0 {
            return (1.0, 2.0);
        }
        let r = *ratio.get_or_insert(k);
        (k, r)
    })
}

/// Evaluates `f` at 8 deterministic pseudo-random variable assignments; true when at least 3 points are
/// finite and every finite point agrees.
fn agree_at_points(
    names: &BTreeSet<String>,
    mut f: impl FnMut(&HashMap<String, f64>) -> (f64, f64),
) -> bool {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut valid = 0;
    for _ in 0..8 {
        let mut env = HashMap::new();
        for n in names {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            env.insert(n.clone(), 0.3 + 2.4 * u);
        }
        let (x, y) = f(&env);
        if x.is_nan() || y.is_nan() || x.is_infinite() || y.is_infinite() {
            continue;
        }
        if !close(x, y, 1e-6) {
            return false;
        }
        valid += 1;
    }
    valid >= 3
}

/// `a` equals `b` read as a percentage either way (`50\%` vs `0.5`).
pub fn percent_equal(a: &Answer, b: &Answer) -> bool {
    let hundred = Expr::Num(BigRational::from_integer(100.into()));
    match (a, b) {
        (Answer::Expr(x), Answer::Expr(y)) => {
            let div = |e: &Expr| Expr::Bin('/', Box::new(e.clone()), Box::new(hundred.clone()));
            exprs_equal(&div(x), y) || exprs_equal(x, &div(y))
        }
        _ => false,
    }
}
