//! Per-token log-probabilities and entropies from logits, differentiable through candle's autograd.
//!
//! `log p(y_t) = logit[y_t] - logsumexp(logits_t)`: the target logit is gathered and one logsumexp
//! per position subtracted, so no `[B, T, V]` log-softmax output is produced (only the exp inside
//! the logsumexp is vocabulary-sized). Only plain tensor ops with recorded backward passes are used
//! (`max` detached, `broadcast_sub`, `exp`, `sum_keepdim`, `log`, `gather`): candle-nn's fused
//! `softmax`/`log_softmax` kernels do not record gradients.
//!
//! Half-precision logits are upcast to f32 first: a bf16 logsumexp over 150k entries loses the
//! small differences the importance ratio depends on. f32 and f64 logits are used as they are.

use candle_core::{DType, Tensor, D};

use crate::{Error, Result};

/// Checks `logits: [B, T, V]` float and `targets: [B, T]` integer ids below `V`; returns the
/// logits in the compute dtype.
fn prepare(logits: &Tensor, targets: Option<&Tensor>) -> Result<Tensor> {
    let (b, t, v) = logits
        .dims3()
        .map_err(|_| Error::Shape(format!("logits must be [B, T, V], got {:?}", logits.dims())))?;
    if v == 0 {
        return Err(Error::Shape("logits have an empty vocabulary axis".into()));
    }
    if let Some(targets) = targets {
        if targets.dims() != [b, t] {
            return Err(Error::Shape(format!(
                "targets must be [{b}, {t}] to match logits {:?}, got {:?}",
                logits.dims(),
                targets.dims()
            )));
        }
        if !matches!(targets.dtype(), DType::U32 | DType::I64 | DType::U8) {
            return Err(Error::Invalid(format!(
                "targets must be u32, i64 or u8 ids, got {:?}",
                targets.dtype()
            )));
        }
        if b * t > 0 {
            // Out-of-range ids would index past the vocabulary inside gather.
            let ids = targets.flatten_all()?.to_dtype(DType::I64)?;
            let lo = ids.min(0)?.to_scalar::<i64>()?;
            let hi = ids.max(0)?.to_scalar::<i64>()?;
            if lo < 0 || hi >= v as i64 {
                return Err(Error::Invalid(format!(
                    "target ids must lie in [0, {v}), found range [{lo}, {hi}]"
                )));
            }
        }
    }
    Ok(match logits.dtype() {
        DType::F32 | DType::F64 => logits.clone(),
        DType::BF16 | DType::F16 => logits.to_dtype(DType::F32)?,
        other => {
            return Err(Error::Invalid(format!(
                "logits must be a float tensor, got {other:?}"
            )))
        }
    })
}

/// Per-position logsumexp `[B, T, 1]`. The max is detached: it only keeps the exp in range and the
/// result does not depend on it, so its (zero) gradient need not be traced.
fn logsumexp(logits: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(lse.broadcast_add(&max)?)
}

/// Log-probability of each target id: `[B, T]` from `logits: [B, T, V]` and `targets: [B, T]`.
///
/// `targets[b, t]` is the token whose probability `logits[b, t]` predicts (i.e. the caller has
/// already shifted ids by one position). The result is f32 for f32/bf16/f16 logits, f64 for f64.
pub fn token_logprobs(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logits = prepare(logits, Some(targets))?;
    let lse = logsumexp(&logits)?;
    let ids = targets
        .to_dtype(DType::U32)?
        .unsqueeze(D::Minus1)?
        .contiguous()?;
    let picked = logits.contiguous()?.gather(&ids, D::Minus1)?;
    Ok((picked - lse)?.squeeze(D::Minus1)?)
}

/// Entropy of the predictive distribution at each position, `[B, T]`, differentiable.
///
/// This one does materialise `[B, T, V]` probabilities: it is only needed when the entropy bonus is
/// on (or for logging, where the caller can compute it on detached logits).
pub fn token_entropy(logits: &Tensor) -> Result<Tensor> {
    let logits = prepare(logits, None)?;
    let lse = logsumexp(&logits)?;
    let log_p = logits.broadcast_sub(&lse)?;
    let p = log_p.exp()?;
    Ok((p * log_p)?.sum(D::Minus1)?.neg()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Deterministic pseudo-random values in [-2, 2).
    fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 4.0 - 2.0
            })
            .collect()
    }

    fn naive_logprobs(l: &[f64], v: usize, targets: &[u32]) -> Vec<f64> {
        l.chunks(v)
            .zip(targets)
            .map(|(row, &y)| {
                let lse = row.iter().map(|x| x.exp()).sum::<f64>().ln();
                row[y as usize] - lse
            })
            .collect()
    }

    #[test]
    fn values_match_naive_log_softmax() {
        let (b, t, v) = (2, 3, 7);
        let l = values(b * t * v, 1);
        let targets = [0u32, 6, 3, 2, 2, 5];
        let logits = Tensor::from_vec(l.clone(), (b, t, v), &Device::Cpu).unwrap();
        let ids = Tensor::from_vec(targets.to_vec(), (b, t), &Device::Cpu).unwrap();
        let got = token_logprobs(&logits, &ids)
            .unwrap()
            .flatten_all()
            .unwrap();
        let want = naive_logprobs(&l, v, &targets);
        for (g, w) in got.to_vec1::<f64>().unwrap().iter().zip(&want) {
            assert!((g - w).abs() < 1e-12);
        }
        // f32 path, with large logits that would overflow a plain exp.
        let big: Vec<f32> = l.iter().map(|x| (x * 100.0) as f32).collect();
        let logits = Tensor::from_vec(big.clone(), (b, t, v), &Device::Cpu).unwrap();
        let got = token_logprobs(&logits, &ids)
            .unwrap()
            .flatten_all()
            .unwrap();
        let big64: Vec<f64> = big.iter().map(|&x| x as f64).collect();
        let want: Vec<f64> = big64
            .chunks(v)
            .zip(&targets)
            .map(|(row, &y)| {
                let m = row.iter().cloned().fold(f64::MIN, f64::max);
                row[y as usize] - m - row.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
            })
            .collect();
        for (g, w) in got.to_vec1::<f32>().unwrap().iter().zip(&want) {
            assert!((*g as f64 - w).abs() < 1e-3, "{g} vs {w}");
        }
    }

    /// Central finite differences of `f` at `x` against `grad` (f64), max relative error.
    fn fd_check(
        x: &[f64],
        shape: (usize, usize, usize),
        grad: &[f64],
        f: impl Fn(&Tensor) -> f64,
    ) -> f64 {
        let h = 1e-6;
        let mut worst: f64 = 0.0;
        for i in 0..x.len() {
            let mut xp = x.to_vec();
            xp[i] += h;
            let mut xm = x.to_vec();
            xm[i] -= h;
            let fp = f(&Tensor::from_vec(xp, shape, &Device::Cpu).unwrap());
            let fm = f(&Tensor::from_vec(xm, shape, &Device::Cpu).unwrap());
            let num = (fp - fm) / (2.0 * h);
            let rel = (num - grad[i]).abs() / num.abs().max(grad[i].abs()).max(1e-8);
            worst = worst.max(rel);
        }
        worst
    }

    #[test]
    fn logprob_gradient_matches_finite_differences() {
        let shape = (2, 3, 5);
        let x = values(30, 7);
        let w = Tensor::from_vec(values(6, 9), (2, 3), &Device::Cpu).unwrap();
        let ids = Tensor::from_vec(vec![1u32, 4, 0, 2, 2, 3], (2, 3), &Device::Cpu).unwrap();
        let objective = |logits: &Tensor| {
            (token_logprobs(logits, &ids).unwrap() * &w)
                .unwrap()
                .sum_all()
                .unwrap()
        };
        let var =
            Var::from_tensor(&Tensor::from_vec(x.clone(), shape, &Device::Cpu).unwrap()).unwrap();
        let grads = objective(var.as_tensor()).backward().unwrap();
        let g = grads.get(var.as_tensor()).unwrap();
        let g = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let err = fd_check(&x, shape, &g, |t| objective(t).to_scalar::<f64>().unwrap());
        assert!(err < 1e-3, "relative error {err}");
    }

    #[test]
    fn entropy_value_and_gradient() {
        let shape = (1, 2, 4);
        let x = values(8, 3);
        // value against the definition
        let logits = Tensor::from_vec(x.clone(), shape, &Device::Cpu).unwrap();
        let h = token_entropy(&logits).unwrap().flatten_all().unwrap();
        for (row, got) in x.chunks(4).zip(h.to_vec1::<f64>().unwrap()) {
            let z: f64 = row.iter().map(|v| v.exp()).sum();
            let want: f64 = -row
                .iter()
                .map(|v| (v.exp() / z) * (v - z.ln()))
                .sum::<f64>();
            assert!((got - want).abs() < 1e-12);
        }
        let w = Tensor::from_vec(vec![0.7, -1.3], (1, 2), &Device::Cpu).unwrap();
        let objective = |l: &Tensor| (token_entropy(l).unwrap() * &w).unwrap().sum_all().unwrap();
        let var = Var::from_tensor(&logits).unwrap();
        let grads = objective(var.as_tensor()).backward().unwrap();
        let g = grads.get(var.as_tensor()).unwrap();
        let g = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let err = fd_check(&x, shape, &g, |t| objective(t).to_scalar::<f64>().unwrap());
        assert!(err < 1e-3, "relative error {err}");
    }

    #[test]
    fn bad_inputs_are_errors() {
        let logits = Tensor::zeros((2, 3, 4), DType::F32, &Device::Cpu).unwrap();
        let ids = Tensor::zeros((2, 2), DType::U32, &Device::Cpu).unwrap();
        assert!(matches!(
            token_logprobs(&logits, &ids),
            Err(Error::Shape(_))
        ));
        let ids = Tensor::from_vec(vec![0u32, 1, 2, 3, 4, 0], (2, 3), &Device::Cpu).unwrap();
        assert!(matches!(
            token_logprobs(&logits, &ids),
            Err(Error::Invalid(_))
        ));
        let ids = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(token_logprobs(&logits, &ids).is_err());
        let flat = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(token_entropy(&flat).is_err());
    }

    #[test]
    fn bf16_logits_give_f32_logprobs() {
        let logits = Tensor::zeros((1, 2, 4), DType::BF16, &Device::Cpu).unwrap();
        let ids = Tensor::zeros((1, 2), DType::U32, &Device::Cpu).unwrap();
        let lp = token_logprobs(&logits, &ids).unwrap();
        assert_eq!(lp.dtype(), DType::F32);
        let v = lp.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|x| (x + 4f32.ln()).abs() < 1e-6));
    }
}
