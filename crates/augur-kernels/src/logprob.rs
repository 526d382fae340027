//! Target log-probability and entropy per position, straight from logits `[N, V]`.
//!
//! Forward, per row in one pass: an online logsumexp that also accumulates `Σ e^(x−m)·x`, giving
//! `lse` and `E_p[x]`; then `logprob = x[y] − lse` and `entropy = lse − E_p[x]`. The output is
//! `[N, 2]` f32. Backward recomputes the row's statistics (one more read of the logits) and
//! writes `dL/dx = g_lp·(onehot(y) − p) − g_H·p·(x − E_p[x])` straight into the gradient: no
//! `[N, V]` log-softmax or probability tensor exists in either direction, only the logits and
//! their gradient. Statistics are f32 whatever the logits' dtype (f32 or bf16 on GPU; the CPU
//! twin upcasts to f32), so a bf16 model still gets f32 log-probabilities for the loss.
//!
//! [`crate::sample_last`]'s logprob and augur-train's composite `token_logprobs` compute the
//! same quantity; augur-train's chunked LM-head op uses the same row statistics on hidden states.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::{Error, Result};

/// `[N, 2]` f32: column 0 `log softmax(logits[i])[targets[i]]`, column 1 the entropy of
/// `softmax(logits[i])`. `logits: [N, V]` float, `targets: [N]` u32 on the same device.
/// Differentiable with respect to `logits`.
pub fn token_logprob_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (n, v) = logits
        .dims2()
        .map_err(|_| Error::Invalid(format!("logits must be [N, V], got {:?}", logits.dims())))?;
    if targets.dims() != [n] {
        return Err(Error::Invalid(format!(
            "targets must be [{n}] to match logits {:?}, got {:?}",
            logits.dims(),
            targets.dims()
        )));
    }
    if targets.dtype() != DType::U32 {
        return Err(Error::Invalid(format!(
            "targets must be u32 ids, got {:?}",
            targets.dtype()
        )));
    }
    if v == 0 {
        return Err(Error::Invalid(
            "logits have an empty vocabulary axis".into(),
        ));
    }
    if n > 0 {
        let hi = targets.max(0)?.to_scalar::<u32>()?;
        if hi as usize >= v {
            return Err(Error::Invalid(format!(
                "target id {hi} is outside the vocabulary of {v}"
            )));
        }
    }
    let logits = match (logits.device().is_cpu(), logits.dtype()) {
        (_, DType::F32) | (false, DType::BF16) => logits.contiguous()?,
        (_, DType::F16 | DType::BF16 | DType::F64) => logits.to_dtype(DType::F32)?,
        (_, other) => {
            return Err(Error::Invalid(format!(
                "logits must be a float tensor, got {other:?}"
            )))
        }
    };
    Ok(logits.apply_op2(&targets.contiguous()?, LogprobEntropy)?)
}

/// The forward op (logits, targets) → `[N, 2]`.
struct LogprobEntropy;

/// The backward op (logits, targets, grad `[N, 2]`) → dlogits `[N, V]` in the logits' dtype.
struct LogprobEntropyGrad;

/// `(lse, E_p[x])` of one row of logits in a single pass (an online logsumexp that also
/// accumulates `Σ e^(x−m)·x`): `logprob = x[y] − lse`, `entropy = lse − E_p[x]`. `-inf` logits
/// (masked tokens) weigh nothing. The one CPU implementation, shared with augur-train's chunked
/// LM head.
pub fn row_stats(x: &[f32]) -> (f32, f32) {
    let (mut m, mut s, mut t) = (f32::NEG_INFINITY, 0f32, 0f32);
    for &v in x {
        if v == f32::NEG_INFINITY {
            continue;
        }
        if v > m {
            let r = (m - v).exp();
            s *= r;
            t *= r;
            m = v;
        }
        let e = (v - m).exp();
        s += e;
        t += e * v;
    }
    (m + s.ln(), t / s)
}

fn f32_rows<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{what} must be f32 on CPU");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{what} must be contiguous");
    };
    Ok(&data[start..end])
}

fn u32_ids<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [u32]> {
    let CpuStorage::U32(data) = storage else {
        candle_core::bail!("targets must be u32");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("targets must be contiguous");
    };
    Ok(&data[start..end])
}

impl CustomOp2 for LogprobEntropy {
    fn name(&self) -> &'static str {
        "augur-token-logprob-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, v) = l1.shape().dims2()?;
        let logits = f32_rows(s1, l1, "logits")?;
        let targets = u32_ids(s2, l2)?;
        let mut out = vec![0f32; n * 2];
        out.par_chunks_mut(2)
            .zip(logits.par_chunks(v))
            .zip(targets.par_iter())
            .for_each(|((o, row), &y)| {
                let (lse, mean) = row_stats(row);
                o[0] = row[y as usize] - lse;
                o[1] = lse - mean;
            });
        Ok((CpuStorage::F32(out), Shape::from((n, 2))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        crate::cuda::logprob_entropy_fwd(s1, l1, s2, l2)
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad_res.to_dtype(DType::F32)?.contiguous()?;
        let d = logits.apply_op3_no_bwd(targets, &grad, &LogprobEntropyGrad)?;
        Ok((Some(d), None))
    }
}

impl CustomOp3 for LogprobEntropyGrad {
    fn name(&self) -> &'static str {
        "augur-token-logprob-entropy-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, v) = l1.shape().dims2()?;
        let logits = f32_rows(s1, l1, "logits")?;
        let targets = u32_ids(s2, l2)?;
        let grad = f32_rows(s3, l3, "the output gradient")?;
        let mut d = vec![0f32; n * v];
        d.par_chunks_mut(v)
            .zip(logits.par_chunks(v))
            .enumerate()
            .for_each(|(r, (out, row))| {
                let (lse, mean) = row_stats(row);
                let (g_lp, g_h) = (grad[2 * r], grad[2 * r + 1]);
                for (o, &x) in out.iter_mut().zip(row) {
                    let p = (x - lse).exp();
                    // p = 0 for a masked (-inf) logit: no gradient, and no 0·inf.
                    *o = if p == 0.0 {
                        0.0
                    } else {
                        -p * (g_lp + g_h * (x - mean))
                    };
                }
                out[targets[r] as usize] += g_lp;
            });
        Ok((CpuStorage::F32(d), Shape::from((n, v))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        crate::cuda::logprob_entropy_bwd(s1, l1, s2, l2, s3, l3)
    }
}
