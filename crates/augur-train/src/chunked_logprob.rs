//! Token log-probabilities and entropies straight from final hidden states, without ever holding
//! the `[N, V]` logits of the whole batch, and with the backward's work done in the forward.
//!
//! The composite path (`logits → logsumexp → gather`, [`crate::logprob`]) runs a dozen
//! vocabulary-sized elementwise passes forward and backward on one thread, allocating a fresh
//! `[N, V]` tensor for each: with a 49k vocabulary that was a third of an SFT step on ~200-token
//! rows (the passes, and the kernel zeroing the pages of those allocations). Here the frozen LM
//! head is applied to `chunk` rows at a time inside one custom op, and each chunk's logits are
//! used up before the next:
//!
//! * forward, per chunk: logits → (target logprob, entropy) per row (rayon over rows); with a
//!   gradient, the logits are then turned in place into `onehot(y) − p` (and, for the entropy,
//!   `−p·(x − E_p[x])`) and multiplied by the head's weight, giving each row's Jacobian
//!   `d logprob / d hidden` (`[H]`, and `d entropy / d hidden`);
//! * backward: `dL/dhidden[i] = g_lp[i]·J_lp[i] + g_H[i]·J_H[i]`, a scaled copy.
//!
//! So each row costs one LM-head matmul forward and one backward, as a plain autograd graph would,
//! with no logits recomputation, and the op keeps `[N, H]` (not `[N, V]`) for its backward. Rows
//! that are not `active` (padding, prompt positions: no loss) get 0 and no head matmul at all.
//!
//! The head must be frozen (augur never adapts the LM head), since its weights get no gradient
//! here. CPU and f32 only; other devices use the composite ops of [`crate::logprob`].

use std::sync::{Arc, Mutex};

use augur_kernels::row_stats;
use augur_model::DecoderModel;
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

impl FrozenHead {
    /// The LM head of `model` (its own matmul forward; the backward reads a packed weight in place).
    pub fn of(model: &DecoderModel) -> Self {
        let (fwd, bwd) = (model.lm_head().clone(), model.lm_head().clone());
        FrozenHead {
            forward: Arc::new(move |x: &Tensor| fwd.forward(x, false)),
            backward: Arc::new(move |g: &Tensor| bwd.base_grad_input(g)),
        }
    }
}

/// Which gradients the op prepares during its forward (it cannot know whether a backward will
/// follow, and preparing costs one more LM-head product per row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadGrad {
    /// No backward: scoring, the reference policy, evaluation.
    Off,
    /// The log-probability column is differentiable; a gradient reaching the entropy column is
    /// an error (it would otherwise be dropped silently).
    Logprob,
    /// Both columns are differentiable (an entropy bonus in the loss).
    LogprobEntropy,
}

/// `[N, 2]`: column 0 the log-probability of `targets[i]` under `head(hidden[i])`, column 1 the
/// entropy of that distribution, for the rows where `active` is true (all rows when `None`); the
/// other rows get `(0, 0)` and no gradient. Differentiable with respect to `hidden: [N, H]`
/// (f32, CPU) as `grad` says; the head runs on `chunk` rows at a time.
pub fn head_logprob_entropy(
    hidden: &Tensor,
    targets: &[u32],
    active: Option<&[bool]>,
    head: &FrozenHead,
    chunk: usize,
    grad: HeadGrad,
) -> Result<Tensor> {
    let (n, _) = hidden.dims2()?;
    if targets.len() != n || active.is_some_and(|a| a.len() != n) {
        return Err(Error::Shape(format!(
            "{} targets and {} active flags for {n} hidden rows",
            targets.len(),
            active.map_or(n, <[bool]>::len)
        )));
    }
    if !hidden.device().is_cpu() || hidden.dtype() != DType::F32 {
        return Err(Error::Invalid(
            "the chunked LM-head logprob runs on CPU f32 hidden states".into(),
        ));
    }
    let rows: Vec<usize> = (0..n).filter(|&i| active.is_none_or(|a| a[i])).collect();
    let op = HeadLogprob {
        targets: targets.to_vec(),
        rows,
        head: head.clone(),
        chunk: chunk.max(1),
        grad,
        jacobians: Mutex::new(Vec::new()),
    };
    let hidden = hidden.contiguous()?;
    Ok(match grad {
        HeadGrad::Off => hidden.apply_op1_no_bwd(&op)?,
        HeadGrad::Logprob | HeadGrad::LogprobEntropy => hidden.apply_op1(op)?,
    })
}

struct HeadLogprob {
    targets: Vec<u32>,
    /// The active rows, ascending.
    rows: Vec<usize>,
    head: FrozenHead,
    chunk: usize,
    grad: HeadGrad,
    /// Filled by the forward when `grad` is not `Off`: per active row (in `rows` order), the
    /// `[H]` gradient of its logprob with respect to its hidden state, then (with the entropy)
    /// that of its entropy.
    jacobians: Mutex<Vec<f32>>,
}

impl HeadLogprob {
    /// Columns per active row in `jacobians`: 1 (logprob) or 2 (and entropy).
    fn columns(&self) -> usize {
        match self.grad {
            HeadGrad::LogprobEntropy => 2,
            _ => 1,
        }
    }

    /// Target of `row`, checked against the vocabulary size `v`.
    fn target(&self, row: usize, v: usize) -> candle_core::Result<usize> {
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
        let cols = self.columns();
        let mut jac = match self.grad {
            HeadGrad::Off => Vec::new(),
            _ => vec![0f32; self.rows.len() * cols * h],
        };
        for (c, rows) in self.rows.chunks(self.chunk).enumerate() {
            let mut x = Vec::with_capacity(rows.len() * h);
            for &r in rows {
                x.extend_from_slice(&data[r * h..(r + 1) * h]);
            }
            let x = Tensor::from_vec(x, (rows.len(), h), &Device::Cpu)?;
            let logits = (self.head.forward)(&x)?.to_dtype(DType::F32)?;
            let v = logits.dim(candle_core::D::Minus1)?;
            let ys = rows
                .iter()
                .map(|&r| self.target(r, v))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let mut logits = logits.flatten_all()?.to_vec1::<f32>()?;
            // The entropy's Jacobian needs the logits after the first is written over them.
            let mut ent = match self.grad {
                HeadGrad::LogprobEntropy => logits.clone(),
                _ => Vec::new(),
            };
            let stats: Vec<(f32, f32)> = logits.par_chunks(v).map(row_stats).collect();
            for (i, ((&r, &y), &(lse, mean))) in rows.iter().zip(&ys).zip(&stats).enumerate() {
                out[r * 2] = logits[i * v + y] - lse;
                out[r * 2 + 1] = lse - mean;
            }
            if self.grad == HeadGrad::Off {
                continue;
            }
            logits
                .par_chunks_mut(v)
                .zip(ys.par_iter().zip(stats.par_iter()))
                .for_each(|(row, (&y, &(lse, _)))| {
                    for x in row.iter_mut() {
                        *x = -(*x - lse).exp();
                    }
                    row[y] += 1.0;
                });
            if !ent.is_empty() {
                ent.par_chunks_mut(v)
                    .zip(stats.par_iter())
                    .for_each(|(row, &(lse, mean))| {
                        for x in row.iter_mut() {
                            let p = (*x - lse).exp();
                            // p = 0 for a masked (-inf) logit: no gradient, and no 0·inf.
                            *x = if p == 0.0 { 0.0 } else { -p * (*x - mean) };
                        }
                    });
                logits.extend_from_slice(&ent);
            }
            let d = Tensor::from_vec(logits, (cols * rows.len(), v), &Device::Cpu)?;
            let j = (self.head.backward)(&d)?.to_dtype(DType::F32)?;
            let j = j.flatten_all()?.to_vec1::<f32>()?;
            // `j` is [cols, rows, H]; `jac` is [rows of all chunks, cols, H].
            let start = c * self.chunk;
            for k in 0..cols {
                for i in 0..rows.len() {
                    let dst = ((start + i) * cols + k) * h;
                    let src = (k * rows.len() + i) * h;
                    jac[dst..dst + h].copy_from_slice(&j[src..src + h]);
                }
            }
        }
        *self.jacobians.lock().expect("jacobians lock") = jac;
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
        let cols = self.columns();
        if cols == 1 {
            if let Some(i) = self.rows.iter().find(|&&r| g[r * 2 + 1] != 0.0) {
                candle_core::bail!(
                    "head logprob: the entropy of row {i} got a gradient, but the op was built \
                     for log-probability gradients only (HeadGrad::Logprob)"
                );
            }
        }
        let jac = self.jacobians.lock().expect("jacobians lock");
        if jac.len() != self.rows.len() * cols * h {
            candle_core::bail!("head logprob: backward without the forward's Jacobians");
        }
        let mut dx = vec![0f32; n * h];
        for (i, &r) in self.rows.iter().enumerate() {
            let dst = &mut dx[r * h..(r + 1) * h];
            for k in 0..cols {
                let gk = g[r * 2 + k];
                let src = &jac[(i * cols + k) * h..(i * cols + k + 1) * h];
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d += gk * s;
                }
            }
        }
        Ok(Some(Tensor::from_vec(dx, (n, h), arg.device())?))
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
            let out = head_logprob_entropy(
                x.as_tensor(),
                &targets,
                None,
                &f,
                chunk,
                HeadGrad::LogprobEntropy,
            )
            .unwrap();
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
            let out = head_logprob_entropy(&x, &targets, None, &f, 2, HeadGrad::Off).unwrap();
            let o = out.to_vec2::<f32>().unwrap();
            o.iter().map(|r| r[0] as f64 + 0.5 * r[1] as f64).sum()
        };
        let x = Var::from_vec(base.clone(), (n, h), &Device::Cpu).unwrap();
        let out = head_logprob_entropy(
            x.as_tensor(),
            &targets,
            None,
            &f,
            2,
            HeadGrad::LogprobEntropy,
        )
        .unwrap();
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
        for grad in [HeadGrad::Off, HeadGrad::Logprob] {
            assert!(head_logprob_entropy(&x, &[0, 4], None, &f, 8, grad).is_err());
            assert!(head_logprob_entropy(&x, &[0], None, &f, 8, grad).is_err());
            assert!(head_logprob_entropy(&x, &[0, 1], Some(&[true]), &f, 8, grad).is_err());
        }
    }

    /// Inactive rows give (0, 0), cost no head product and get no gradient; the active ones get
    /// what they get when every row is active. With `HeadGrad::Logprob` the logprob gradient is
    /// the same, and a gradient reaching the entropy column is an error rather than dropped.
    #[test]
    fn inactive_rows_are_skipped_and_logprob_only_gradients_match() {
        let (n, h, v) = (6, 4, 9);
        let (_, f) = head(v, h);
        let targets: Vec<u32> = (0..n as u32).map(|i| (i * 5) % v as u32).collect();
        let active = [true, false, true, true, false, true];
        let x = Var::from_vec(values(n * h, 11), (n, h), &Device::Cpu).unwrap();
        let a = Tensor::from_vec(values(n, 12), n, &Device::Cpu).unwrap();
        let run = |active: Option<&[bool]>, grad: HeadGrad| {
            let out = head_logprob_entropy(x.as_tensor(), &targets, active, &f, 4, grad).unwrap();
            let lp = out.narrow(1, 0, 1).unwrap().squeeze(1).unwrap();
            let loss = (&lp * &a).unwrap().sum_all().unwrap();
            let g = loss.backward().unwrap().get(x.as_tensor()).unwrap().clone();
            (out.to_vec2::<f32>().unwrap(), g.to_vec2::<f32>().unwrap())
        };
        let (all_out, all_g) = run(None, HeadGrad::LogprobEntropy);
        for grad in [HeadGrad::Logprob, HeadGrad::LogprobEntropy] {
            let (out, g) = run(Some(&active), grad);
            for i in 0..n {
                match active[i] {
                    true => {
                        assert_eq!(out[i], all_out[i], "row {i}");
                        for (p, q) in g[i].iter().zip(&all_g[i]) {
                            assert!((p - q).abs() < 1e-6, "row {i}: {p} vs {q}");
                        }
                    }
                    false => {
                        assert_eq!(out[i], [0.0, 0.0], "row {i}");
                        assert!(g[i].iter().all(|&d| d == 0.0), "row {i}");
                    }
                }
            }
        }
        let out =
            head_logprob_entropy(x.as_tensor(), &targets, None, &f, 4, HeadGrad::Logprob).unwrap();
        let ent = out.narrow(1, 1, 1).unwrap().sum_all().unwrap();
        assert!(ent.backward().is_err());
    }
}
