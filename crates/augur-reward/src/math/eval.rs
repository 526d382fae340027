//! Evaluating an [`Expr`]: exactly over the rationals when every operation allows it, otherwise as `f64`
//! with variables bound to given values.

use std::collections::{BTreeSet, HashMap};

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};

use super::expr::Expr;

/// Largest integer exponent evaluated exactly, and largest result size in bits; beyond, use floats.
const MAX_EXACT_EXP: u32 = 512;
const MAX_EXACT_BITS: u64 = 8192;

/// The exact rational value of `e`, or `None` if it involves variables, π, ∞, irrational roots or functions.
pub fn exact(e: &Expr) -> Option<BigRational> {
    match e {
        Expr::Num(v) => Some(v.clone()),
        Expr::Var(_) | Expr::Pi | Expr::Inf | Expr::Log(..) | Expr::Root(..) => None,
        Expr::Neg(a) => Some(-exact(a)?),
        Expr::Bin(op, a, b) => {
            let (x, y) = (exact(a)?, exact(b)?);
            match op {
                '+' => Some(x + y),
                '-' => Some(x - y),
                '*' => Some(x * y),
                '/' => (!y.is_zero()).then(|| x / y),
                '^' => pow_exact(&x, &y),
                _ => None,
            }
        }
        Expr::Func(f, a) => {
            let x = exact(a)?;
            match f.as_str() {
                "sqrt" => sqrt_exact(&x),
                "abs" => Some(x.abs()),
                "floor" => Some(BigRational::from_integer(x.floor().to_integer())),
                "ceil" => Some(BigRational::from_integer(x.ceil().to_integer())),
                "fact" => {
                    let n = x.is_integer().then(|| x.to_integer().to_u32())??;
                    (n <= 300)
                        .then(|| BigRational::from_integer((1..=n).map(BigInt::from).product()))
                }
                _ => None,
            }
        }
        Expr::Binom(n, k) => {
            let n = exact(n)?.to_integer().to_u32()?;
            let k = exact(k)?.to_integer().to_u32()?;
            if k > n || n > 2000 {
                return (k > n).then(BigRational::zero);
            }
            let mut acc = BigInt::one();
            for i in 0..k.min(n - k) {
                acc = acc * BigInt::from(n - i) / BigInt::from(i + 1);
            }
            Some(BigRational::from_integer(acc))
        }
    }
}

fn pow_exact(x: &BigRational, y: &BigRational) -> Option<BigRational> {
    if !y.is_integer() {
        return None;
    }
    let e = y.to_integer().to_i64()?;
    let mag = u32::try_from(e.unsigned_abs())
        .ok()
        .filter(|m| *m <= MAX_EXACT_EXP)?;
    let bits = x.numer().bits().max(x.denom().bits());
    if bits.saturating_mul(mag as u64) > MAX_EXACT_BITS {
        return None;
    }
    if x.is_zero() && e < 0 {
        return None;
    }
    let p = BigRational::new(x.numer().pow(mag), x.denom().pow(mag));
    Some(if e < 0 { p.recip() } else { p })
}

fn sqrt_exact(x: &BigRational) -> Option<BigRational> {
    if x.is_negative() {
        return None;
    }
    let (n, d) = (x.numer().sqrt(), x.denom().sqrt());
    (&n * &n == *x.numer() && &d * &d == *x.denom()).then(|| BigRational::new(n, d))
}

/// The variable names used in `e`.
pub fn vars(e: &Expr, out: &mut BTreeSet<String>) {
    match e {
        Expr::Var(n) => {
            out.insert(n.clone());
        }
        Expr::Num(_) | Expr::Pi | Expr::Inf => {}
        Expr::Neg(a) | Expr::Func(_, a) => vars(a, out),
        Expr::Bin(_, a, b) | Expr::Root(a, b) | Expr::Log(a, b) | Expr::Binom(a, b) => {
            vars(a, out);
            vars(b, out);
        }
    }
}

/// The floating-point value of `e` with variables taken from `env` (NaN for unbound ones).
pub fn numeric(e: &Expr, env: &HashMap<String, f64>) -> f64 {
    match e {
        Expr::Num(v) => v.to_f64().unwrap_or(f64::NAN),
        Expr::Var(n) => env.get(n).copied().unwrap_or(f64::NAN),
        Expr::Pi => std::f64::consts::PI,
        Expr::Inf => f64::INFINITY,
        Expr::Neg(a) => -numeric(a, env),
        Expr::Bin(op, a, b) => {
            let (x, y) = (numeric(a, env), numeric(b, env));
            match op {
                '+' => x + y,
                '-' => x - y,
                '*' => x * y,
                '/' => x / y,
                '^' => x.powf(y),
                _ => f64::NAN,
            }
        }
        Expr::Func(f, a) => {
            let x = numeric(a, env);
            match f.as_str() {
                "sqrt" => x.sqrt(),
                "abs" => x.abs(),
                "floor" => x.floor(),
                "ceil" => x.ceil(),
                "sin" => x.sin(),
                "cos" => x.cos(),
                "tan" => x.tan(),
                "cot" => 1.0 / x.tan(),
                "sec" => 1.0 / x.cos(),
                "csc" => 1.0 / x.sin(),
                "arcsin" => x.asin(),
                "arccos" => x.acos(),
                "arctan" => x.atan(),
                "sinh" => x.sinh(),
                "cosh" => x.cosh(),
                "tanh" => x.tanh(),
                "ln" => x.ln(),
                "exp" => x.exp(),
                "fact" if x >= 0.0 && x.fract() == 0.0 && x <= 170.0 => {
                    (1..=x as u64).map(|k| k as f64).product()
                }
                _ => f64::NAN,
            }
        }
        Expr::Root(n, x) => numeric(x, env).powf(1.0 / numeric(n, env)),
        Expr::Log(b, x) => numeric(x, env).ln() / numeric(b, env).ln(),
        Expr::Binom(n, k) => {
            let (n, k) = (numeric(n, env), numeric(k, env));
            if n.fract() != 0.0 || k.fract() != 0.0 || k < 0.0 || n < 0.0 || k > n {
                return f64::NAN;
            }
            (0..k as u64).fold(1.0, |acc, i| acc * (n - i as f64) / (i as f64 + 1.0))
        }
    }
}

/// Whether two floats agree to a relative tolerance (infinities must match exactly).
pub fn close(a: f64, b: f64, rel: f64) -> bool {
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-12)
}
