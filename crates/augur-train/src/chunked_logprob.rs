//! Token log-probabilities and entropies straight from final hidden states, without ever holding
//! the `[N, V]` logits of the whole batch.
//!
//! With a 150k-token vocabulary the logits dominate a training step's memory: a micro-batch of
//! 8 × 512 tokens has 2.5 GB of f32 logits, and the composite log-softmax keeps four or five
//! tensors of that size alive for the backward. Here the frozen LM head is applied to `chunk`
//! rows at a time inside one custom op:
//!
//! * forward: per chunk, logits → (target logprob, entropy) per row with an online logsumexp, and
//!   the chunk's logits are dropped;
//! * backward: per chunk, the logits are recomputed (gradient checkpointing), turned in place
//!   into `dL/dlogits = g_lp·(onehot(y) − p) − g_H·p·(x − E_p[x])`, and multiplied by the head's
//!   weight to give the hidden states' gradient.
//!
//! Peak extra memory is one chunk's logits instead of several batch-sized copies; the price is
//! one more LM-head matmul per row in the backward. The head must be frozen (augur never adapts
//! the LM head), since its weights get no gradient here. CPU and f32 only; other devices use
//! the composite ops of [`crate::logprob`].

use std::sync::Arc;

use augur_kernels::row_stats;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::{Error, Result};

/// Final hidden states `[n, H]` → logits `[n, V]`.
pub type HeadForward = Arc<dyn Fn(&Tensor) -> candle_core::Result<Tensor> + Send + Sync>;

/// Gradient of the logits `[n, V]` → gradient of the hidden states `[n, H]` (`g @ W`).
pub type HeadBackward = Arc<dyn Fn(&Tensor) -> candle_core::Result<Tensor> + Send + Sync>;

/// The frozen LM head.
#[derive(Clone)]
pub struct FrozenHead {
    /// The model's own (fast, possibly packed) matmul.
    pub forward: HeadForward,
    /// The product with the head's weight (a packed weight is read in place, not unpacked).
    pub backward: HeadBackward,
}

/// `[N, 2]`: column 0 the log-probability of `targets[i]` under `head(hidden[i])`, column 1 the
/// entropy of that distribution; differentiable with respect to `hidden: [N, H]` (f32, CPU).
pub fn head_logprob_entropy(
    hidden: &Tensor,
    targets: &[u32],
    head: &FrozenHead,
    chunk: usize,
) -> Result<Tensor> {
    let (n, _) = hidden.dims2()?;
    if targets.len() != n {
        return Err(Error::Shape(format!(
            "{} targets for {n} hidden rows",
            targets.len()
        )));
    }
    if !hidden.device().is_cpu() || hidden.dtype() != DType::F32 {
        return Err(Error::Invalid(
            "the chunked LM-head logprob runs on CPU f32 hidden states".into(),
        ));
    }
    Ok(hidden.contiguous()?.apply_op1(HeadLogprob {
        targets: targets.to_vec(),
        head: head.clone(),
        chunk: chunk.max(1),
    })?)
}

struct HeadLogprob {
    targets: Vec<u32>,
    head: FrozenHead,
    chunk: usize,
}

impl HeadLogprob {
    /// The chunk's logits `[rows, V]` as a contiguous f32 vector.
    fn logits(&self, x: &Tensor) -> candle_core::Result<(Vec<f32>, usize)> {
        let logits = (self.head.forward)(x)?.to_dtype(DType::F32)?;
        let v = logits.dim(candle_core::D::Minus1)?;
        Ok((logits.flatten_all()?.to_vec1::<f32>()?, v))
    }

    fn check_target(&self, row: usize, v: usize) -> candle_core::Result<usize> {
        let y = self.targets[row] as usize;
        if y >= v {
            candle_core::bail!("target id {y} at row {row} is outside the vocabulary of {v}");
        }
        Ok(y)
    }
}

impl CustomOp1 for HeadLogprob {
    fn name(&self) -> &'static str {
        "augur-head-logprob"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, h) = layout.shape().dims2()?;
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("head logprob: hidden states must be f32");
        };
        let data = &data[layout.start_offset()..layout.start_offset() + n * h];
        let mut out = vec![0f32; n * 2];
        for start in (0..n).step_by(self.chunk) {
            let rows = self.chunk.min(n - start);
            let x = Tensor::from_slice(
                &data[start * h..(start + rows) * h],
                (rows, h),
                &Device::Cpu,
            )?;
            let (logits, v) = self.logits(&x)?;
            for r in 0..rows {
                self.check_target(start + r, v)?;
            }
            out[start * 2..(start + rows) * 2]
                .par_chunks_mut(2)
                .zip(logits.par_chunks(v))
                .enumerate()
                .for_each(|(r, (o, row))| {
                    let (lse, mean) = row_stats(row);
                    o[0] = row[self.targets[start + r] as usize] - lse;
                    o[1] = lse - mean;
                });
        }
        Ok((CpuStorage::F32(out), Shape::from((n, 2))))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let (n, h) = arg.dims2()?;
        let g = grad_res.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let mut grads = Vec::with_capacity(n.div_ceil(self.chunk));
        for start in (0..n).step_by(self.chunk) {
            let rows = self.chunk.min(n - start);
            let x = arg.narrow(0, start, rows)?.contiguous()?.detach();
            let (mut d, v) = self.logits(&x)?;
            for r in 0..rows {
                self.check_target(start + r, v)?;
            }
            d.par_chunks_mut(v).enumerate().for_each(|(r, row)| {
                let (g_lp, g_h) = (g[(start + r) * 2], g[(start + r) * 2 + 1]);
                let (lse, mean) = row_stats(row);
                for x in row.iter_mut() {
                    let p = (*x - lse).exp();
                    // p = 0 for a masked (-inf) logit: no gradient, and no 0·inf.
                    *x = if p == 0.0 {
                        0.0
                    } else {
                        -g_lp * p - g_h * p * (*x - mean)
                    };
                }
                row[self.targets[start + r] as usize] += g_lp;
            });
            let d = Tensor::from_vec(d, (rows, v), &Device::Cpu)?;
            grads.push((self.head.backward)(&d)?.to_dtype(DType::F32)?);
        }
        Ok(Some(Tensor::cat(&grads, 0)?.reshape((n, h))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logprob::{token_entropy, token_logprobs};
    use candle_core::Var;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    /// A frozen dense head `[V, H]` and its closure.
    fn head(v: usize, h: usize) -> (Tensor, FrozenHead) {
        let w = Tensor::from_vec(values(v * h, 7), (v, h), &Device::Cpu).unwrap();
        let (w1, w2) = (w.clone(), w.clone());
        let head = FrozenHead {
            forward: Arc::new(move |x: &Tensor| x.matmul(&w1.t()?)),
            backward: Arc::new(move |g: &Tensor| g.matmul(&w2)),
        };
        (w, head)
    }

    #[test]
    fn values_and_gradients_match_the_composite_ops() {
        let (n, h, v) = (7, 5, 11);
        let (w, f) = head(v, h);
        let targets: Vec<u32> = (0..n as u32).map(|i| (i * 3) % v as u32).collect();
        let ids = Tensor::new(targets.as_slice(), &Device::Cpu).unwrap();
        // Loss weights for logprob and entropy, so both gradient paths are checked.
        let (a, b) = (
            Tensor::from_vec(values(n, 3), n, &Device::Cpu).unwrap(),
            Tensor::from_vec(values(n, 4), n, &Device::Cpu).unwrap(),
        );
        let x = Var::from_vec(values(n * h, 1), (n, h), &Device::Cpu).unwrap();
        for chunk in [1, 3, 7, 100] {
            let out = head_logprob_entropy(x.as_tensor(), &targets, &f, chunk).unwrap();
            let (lp, ent) = (out.narrow(1, 0, 1).unwrap(), out.narrow(1, 1, 1).unwrap());
            let loss = ((lp.squeeze(1).unwrap() * &a).unwrap().sum_all().unwrap()
                + (ent.squeeze(1).unwrap() * &b).unwrap().sum_all().unwrap())
            .unwrap();
            let got = loss.backward().unwrap().get(x.as_tensor()).unwrap().clone();

            let logits = x
                .as_tensor()
                .matmul(&w.t().unwrap())
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let ref_lp = token_logprobs(&logits, &ids.unsqueeze(0).unwrap())
                .unwrap()
                .squeeze(0)
                .unwrap();
            let ref_ent = token_entropy(&logits).unwrap().squeeze(0).unwrap();
            let ref_loss = ((&ref_lp * &a).unwrap().sum_all().unwrap()
                + (&ref_ent * &b).unwrap().sum_all().unwrap())
            .unwrap();
            let want = ref_loss
                .backward()
                .unwrap()
                .get(x.as_tensor())
                .unwrap()
                .clone();
            let close = |p: &Tensor, q: &Tensor| {
                let d = (p - q).unwrap().abs().unwrap().max_all().unwrap();
                d.to_scalar::<f32>().unwrap()
            };
            assert!(
                close(&lp.squeeze(1).unwrap(), &ref_lp) < 1e-5,
                "chunk {chunk}"
            );
            assert!(
                close(&ent.squeeze(1).unwrap(), &ref_ent) < 1e-5,
                "chunk {chunk}"
            );
            assert!(close(&got, &want) < 1e-5, "chunk {chunk}: {got} vs {want}");
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (n, h, v) = (3, 4, 6);
        let (_, f) = head(v, h);
        let targets = [1u32, 5, 0];
        let base = values(n * h, 9);
        let loss_of = |xs: &[f32]| -> f64 {
            let x = Tensor::from_vec(xs.to_vec(), (n, h), &Device::Cpu).unwrap();
            let out = head_logprob_entropy(&x, &targets, &f, 2).unwrap();
            let o = out.to_vec2::<f32>().unwrap();
            o.iter().map(|r| r[0] as f64 + 0.5 * r[1] as f64).sum()
        };
        let x = Var::from_vec(base.clone(), (n, h), &Device::Cpu).unwrap();
        let out = head_logprob_entropy(x.as_tensor(), &targets, &f, 2).unwrap();
        let w = Tensor::new(&[[1f32, 0.5]], &Device::Cpu).unwrap();
        let loss = out.broadcast_mul(&w).unwrap().sum_all().unwrap();
        let grad = loss
            .backward()
            .unwrap()
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap();
        let grad = grad.to_vec1::<f32>().unwrap();
        let eps = 1e-2f32;
        for i in 0..n * h {
            let (mut up, mut down) = (base.clone(), base.clone());
            up[i] += eps;
            down[i] -= eps;
            let fd = (loss_of(&up) - loss_of(&down)) / (2.0 * eps as f64);
            assert!(
                (fd - grad[i] as f64).abs() < 2e-3,
                "x[{i}]: fd {fd} vs {}",
                grad[i]
            );
        }
    }

    #[test]
    fn out_of_range_targets_are_an_error() {
        let (_, f) = head(4, 2);
        let x = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(head_logprob_entropy(&x, &[0, 4], &f, 8).is_err());
        assert!(head_logprob_entropy(&x, &[0], &f, 8).is_err());
    }
}
