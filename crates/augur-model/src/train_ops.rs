//! Fused CPU kernels with hand-written backward passes for the differentiable forward.
//!
//! Built from plain tensor ops, RMSNorm, rotate-half RoPE and the masked softmax of
//! attention take 5-8 passes each, every one allocating an output that autograd keeps
//! alive until the backward: per layer, most of a LoRA step's activation memory and a
//! good share of its time. Each op here is one pass forward and one pass backward and
//! keeps only its input or output. Inputs that do not train (norm weights under LoRA,
//! the rotary tables, the mask) get no gradient, like [`crate::frozen`]'s matmuls.
//!
//! CPU and f32 only: [`crate::ops`] falls back to the composite ops elsewhere.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu_data::{input_slice, with_f32};

/// Rows per rayon task: small rows are cheap, so batch them against scheduling overhead.
fn rows_per_task(row_len: usize) -> usize {
    (16_384 / row_len.max(1)).max(1)
}

/// `x * rsqrt(mean(x^2) + eps) * weight` over the last dimension; gradient for `x` only.
pub(crate) struct RmsNorm {
    pub weight: Tensor,
    pub eps: f32,
}

impl CustomOp1 for RmsNorm {
    fn name(&self) -> &'static str {
        "augur-rms-norm"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = input_slice(storage, layout)?;
        let d = layout.dims().last().copied().unwrap_or(1);
        let mut y = vec![0f32; x.len()];
        with_f32(&self.weight, |w| {
            if w.len() != d {
                candle_core::bail!("rms norm: weight has {} entries, rows have {d}", w.len());
            }
            y.par_chunks_mut(d)
                .zip(x.par_chunks(d))
                .with_min_len(rows_per_task(d))
                .for_each(|(y, x)| {
                    let r = inv_rms(x, self.eps);
                    for ((y, x), w) in y.iter_mut().zip(x).zip(w) {
                        *y = x * r * w;
                    }
                });
            Ok(())
        })?;
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    /// With `r = rsqrt(mean(x^2) + eps)` and `h = g * w`:
    /// `dx = r * h - x * r^3 * mean(h * x)`.
    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let d = arg.dim(candle_core::D::Minus1)?;
        let mut dx = vec![0f32; arg.elem_count()];
        with_f32(arg, |x| {
            with_f32(grad_res, |g| {
                with_f32(&self.weight, |w| {
                    dx.par_chunks_mut(d)
                        .zip(x.par_chunks(d).zip(g.par_chunks(d)))
                        .with_min_len(rows_per_task(d))
                        .for_each(|(dx, (x, g))| {
                            let r = inv_rms(x, self.eps);
                            let hx = dot(g, w, Some(x));
                            let c = r * r * r * hx / d as f32;
                            for (((dx, x), g), w) in dx.iter_mut().zip(x).zip(g).zip(w) {
                                *dx = r * g * w - c * x;
                            }
                        });
                    Ok(())
                })
            })
        })?;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// `sum_i a[i] * b[i] * c.map_or(1, |c| c[i])` in 8 interleaved partial sums: a plain `.sum()`
/// of f32 is one serial chain the compiler may not reorder, which left the row sums of RMSNorm
/// (forward and backward) and the softmax backward scalar, ~4% of a LoRA update in `perf`.
pub(crate) fn dot(a: &[f32], b: &[f32], c: Option<&[f32]>) -> f32 {
    let n = a.len().min(b.len()).min(c.map_or(usize::MAX, <[f32]>::len));
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0f32; 8];
    let full = n / 8 * 8;
    match c {
        Some(c) => {
            let c = &c[..n];
            for ((a, b), c) in a
                .chunks_exact(8)
                .zip(b.chunks_exact(8))
                .zip(c.chunks_exact(8))
            {
                for l in 0..8 {
                    lanes[l] += a[l] * b[l] * c[l];
                }
            }
            (full..n).map(|i| a[i] * b[i] * c[i]).sum::<f32>() + lanes.iter().sum::<f32>()
        }
        None => {
            for (a, b) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
                for l in 0..8 {
                    lanes[l] += a[l] * b[l];
                }
            }
            (full..n).map(|i| a[i] * b[i]).sum::<f32>() + lanes.iter().sum::<f32>()
        }
    }
}

fn inv_rms(x: &[f32], eps: f32) -> f32 {
    let mean_sq = dot(x, x, None) / x.len() as f32;
    1.0 / (mean_sq + eps).sqrt()
}

/// Rotate-half RoPE of `x: [B, H, T, D]` with per-row tables `cos, sin: [B, T, D/2]`.
pub(crate) struct Rope {
    pub cos: Tensor,
    pub sin: Tensor,
}

impl Rope {
    /// `y = x cos + rotate_half(x) sin`, or with `sign = -1` its transpose (the backward).
    fn rotate(&self, x: &[f32], dims: &[usize], sign: f32) -> candle_core::Result<Vec<f32>> {
        let &[b, h, t, d] = dims else {
            candle_core::bail!("rope: expected [B, H, T, D], got {dims:?}");
        };
        let half = d / 2;
        let mut y = vec![0f32; x.len()];
        with_f32(&self.cos, |cos| {
            with_f32(&self.sin, |sin| {
                if cos.len() != b * t * half || sin.len() != cos.len() {
                    candle_core::bail!("rope: tables do not match [B={b}, T={t}, D/2={half}]");
                }
                y.par_chunks_mut(d)
                    .zip(x.par_chunks(d))
                    .enumerate()
                    .with_min_len(rows_per_task(d))
                    .for_each(|(row, (y, x))| {
                        let (bi, ti) = (row / (h * t), row % t);
                        let at = (bi * t + ti) * half;
                        let (c, s) = (&cos[at..at + half], &sin[at..at + half]);
                        let (x1, x2) = x.split_at(half);
                        let (y1, y2) = y.split_at_mut(half);
                        for i in 0..half {
                            let si = sign * s[i];
                            y1[i] = x1[i] * c[i] - x2[i] * si;
                            y2[i] = x2[i] * c[i] + x1[i] * si;
                        }
                    });
                Ok(())
            })
        })?;
        Ok(y)
    }
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "augur-rope"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = input_slice(storage, layout)?;
        let y = self.rotate(x, layout.dims(), 1.0)?;
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    /// A rotation's inverse is its transpose: rotate the gradient by `-angle`.
    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let dx = with_f32(grad_res, |g| self.rotate(g, arg.dims(), -1.0))?;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// Scores this far below a row's maximum get weight exactly 0 (`exp(-200)` is below f32's
/// smallest subnormal): the masked softmax skips their `exp`.
const BLOCKED_GAP: f32 = 200.0;

/// `softmax(x * scale + bias)` over the last dimension for attention scores
/// `x: [B, G, T, S]` (G heads) and an additive mask `bias: [B, T, S]` shared by the heads.
pub(crate) struct MaskedSoftmax {
    pub bias: Tensor,
    pub scale: f32,
}

impl CustomOp1 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "augur-masked-softmax"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = input_slice(storage, layout)?;
        let &[b, g, t, s] = layout.dims() else {
            candle_core::bail!(
                "masked softmax: expected [B, G, T, S], got {:?}",
                layout.dims()
            );
        };
        let mut y = vec![0f32; x.len()];
        with_f32(&self.bias, |bias| {
            if bias.len() != b * t * s {
                candle_core::bail!("masked softmax: mask does not match [B={b}, T={t}, S={s}]");
            }
            y.par_chunks_mut(s)
                .zip(x.par_chunks(s))
                .enumerate()
                .with_min_len(rows_per_task(s))
                .for_each(|(row, (y, x))| {
                    let (bi, ti) = (row / (g * t), row % t);
                    let m = &bias[(bi * t + ti) * s..(bi * t + ti + 1) * s];
                    let mut max = f32::NEG_INFINITY;
                    for ((y, x), m) in y.iter_mut().zip(x).zip(m) {
                        *y = x * self.scale + m;
                        max = max.max(*y);
                    }
                    // A blocked key's weight underflows to 0 unless the whole row is blocked
                    // (padding queries); skipping its `exp` skips libm's slow underflow path,
                    // which half of a causal mask's entries took.
                    let skip = max - BLOCKED_GAP;
                    let mut sum = 0f32;
                    for y in y.iter_mut() {
                        *y = match *y < skip {
                            true => 0.0,
                            false => (*y - max).exp(),
                        };
                        sum += *y;
                    }
                    let inv = 1.0 / sum;
                    y.iter_mut().for_each(|y| *y *= inv);
                });
            Ok(())
        })?;
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    /// `dx = scale * y * (g - sum(g * y))`, row by row.
    fn bwd(
        &self,
        arg: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let s = arg.dim(candle_core::D::Minus1)?;
        let mut dx = vec![0f32; arg.elem_count()];
        with_f32(res, |y| {
            with_f32(grad_res, |g| {
                dx.par_chunks_mut(s)
                    .zip(y.par_chunks(s).zip(g.par_chunks(s)))
                    .with_min_len(rows_per_task(s))
                    .for_each(|(dx, (y, g))| {
                        let dot = dot(y, g, None);
                        for ((dx, y), g) in dx.iter_mut().zip(y).zip(g) {
                            *dx = self.scale * y * (g - dot);
                        }
                    });
                Ok(())
            })
        })?;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// SwiGLU's gating `silu(gate) * up` of two tensors of one shape, `silu(g) = g * sigmoid(g)`,
/// with gradients for both.
///
/// As candle ops this is a SiLU, a product, and a backward of about ten elementwise passes
/// (SiLU's derivative alone takes six), each allocating a `[B, T, intermediate]` tensor on one
/// thread; here it is one parallel pass each way.
pub(crate) struct SwiGlu;

/// Elements per rayon task of [`SwiGlu`].
const SWIGLU_TASK: usize = 16_384;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "augur-swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!("swiglu: gate {:?} and up {:?} differ", l1.dims(), l2.dims());
        }
        let (g, u) = (input_slice(s1, l1)?, input_slice(s2, l2)?);
        let mut y = vec![0f32; g.len()];
        y.par_chunks_mut(SWIGLU_TASK)
            .zip(g.par_chunks(SWIGLU_TASK).zip(u.par_chunks(SWIGLU_TASK)))
            .for_each(|(y, (g, u))| {
                for ((y, &g), &u) in y.iter_mut().zip(g).zip(u) {
                    // candle's own SiLU arithmetic, so the training forward gives the
                    // rollout's values bit for bit (bf16 weights round these activations).
                    *y = (g / (1.0 + (-g).exp())) * u;
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    /// `d up = dy * silu(g)`, `d gate = dy * u * s * (1 + g * (1 - s))` with `s = sigmoid(g)`.
    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let n = gate.elem_count();
        let (mut dg, mut du) = (vec![0f32; n], vec![0f32; n]);
        with_f32(gate, |g| {
            with_f32(up, |u| {
                with_f32(grad_res, |dy| {
                    dg.par_chunks_mut(SWIGLU_TASK)
                        .zip(du.par_chunks_mut(SWIGLU_TASK))
                        .zip(g.par_chunks(SWIGLU_TASK).zip(u.par_chunks(SWIGLU_TASK)))
                        .zip(dy.par_chunks(SWIGLU_TASK))
                        .for_each(|(((dg, du), (g, u)), dy)| {
                            for i in 0..dg.len() {
                                let s = sigmoid(g[i]);
                                du[i] = dy[i] * g[i] * s;
                                dg[i] = dy[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
                            }
                        });
                    Ok(())
                })
            })
        })?;
        Ok((
            Some(Tensor::from_vec(dg, gate.shape(), gate.device())?),
            Some(Tensor::from_vec(du, up.shape(), up.device())?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor, Var};

    use crate::ops::{apply_rope, masked_softmax, rms_norm, swiglu, Grad, Rotary};

    /// `sum(op(x) * r)` for a fixed random `r`, so every output element carries gradient.
    type Op = dyn Fn(&Tensor) -> candle_core::Result<Tensor>;

    fn loss(op: &Op, x: &Tensor, r: &Tensor) -> candle_core::Result<Tensor> {
        (op(x)? * r.to_dtype(x.dtype())?)?.sum_all()
    }

    /// The gradient of `loss` at `x0` (f32: the fused kernels; f64: the composite ops).
    fn grad(op: &Op, x0: &Tensor, r: &Tensor, dtype: DType) -> candle_core::Result<Tensor> {
        let x = Var::from_tensor(&x0.to_dtype(dtype)?)?;
        let grads = loss(op, x.as_tensor(), r)?.backward()?;
        grads
            .get(x.as_tensor())
            .expect("x has a gradient")
            .to_dtype(DType::F64)
    }

    fn max_abs(t: &Tensor) -> f64 {
        t.abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    /// The fused f32 backward against (1) candle's autograd through the plain ops in f64
    /// and (2) central finite differences of the fused forward.
    fn check(name: &str, op: &Op, x0: &Tensor) -> candle_core::Result<()> {
        let r = Tensor::randn(0f32, 1.0, x0.shape(), x0.device())?;
        let fused = grad(op, x0, &r, DType::F32)?;
        let reference = grad(op, x0, &r, DType::F64)?;
        let err = max_abs(&(&fused - &reference)?) / max_abs(&reference).max(1e-6);
        assert!(err < 1e-4, "{name}: fused vs autograd relative error {err}");
        let flat = x0.flatten_all()?.to_vec1::<f32>()?;
        let g = fused.flatten_all()?.to_vec1::<f64>()?;
        let h = 1e-2f32;
        for i in (0..flat.len()).step_by(flat.len() / 13 + 1) {
            let at = |delta: f32| -> candle_core::Result<f64> {
                let mut v = flat.clone();
                v[i] += delta;
                let x = Tensor::from_vec(v, x0.shape(), x0.device())?;
                loss(op, &x, &r)?.to_dtype(DType::F64)?.to_scalar::<f64>()
            };
            let fd = (at(h)? - at(-h)?) / (2.0 * h as f64);
            let tol = 2e-2 * (1.0 + g[i].abs());
            assert!(
                (fd - g[i]).abs() < tol,
                "{name}[{i}]: finite difference {fd}, backward {}",
                g[i]
            );
        }
        Ok(())
    }

    #[test]
    fn lane_dot_matches_a_plain_sum() {
        // 19 = two full 8-lane chunks and a tail of 3.
        let v = |k: f32| (0..19).map(|i| (i as f32 * k).sin()).collect::<Vec<f32>>();
        let (a, b, c) = (v(0.7), v(1.3), v(2.1));
        let two: f64 = (0..19).map(|i| a[i] as f64 * b[i] as f64).sum();
        let three: f64 = (0..19)
            .map(|i| a[i] as f64 * b[i] as f64 * c[i] as f64)
            .sum();
        assert!((super::dot(&a, &b, None) as f64 - two).abs() < 1e-5);
        assert!((super::dot(&a, &b, Some(&c)) as f64 - three).abs() < 1e-5);
    }

    #[test]
    fn rms_norm_backward_matches_autograd_and_finite_differences() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, 16, &dev)?;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 16), &dev)?;
        let op = move |x: &Tensor| rms_norm(x, &w.to_dtype(x.dtype())?, 1e-6, Grad::Tracked);
        check("rms_norm", &op, &x)
    }

    #[test]
    fn rope_backward_matches_autograd_and_finite_differences() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let rot = Rotary::new(8, 10_000.0, 32, DType::F32, &dev)?;
        let pos = Tensor::new(&[[0u32, 1, 2, 3], [0, 0, 5, 9]], &dev)?;
        let (cos, sin) = rot.gather(&pos)?;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 4, 8), &dev)?;
        let op = move |x: &Tensor| {
            let dt = x.dtype();
            apply_rope(x, &cos.to_dtype(dt)?, &sin.to_dtype(dt)?, Grad::Tracked)
        };
        check("rope", &op, &x)
    }

    /// Both inputs' gradients against f64 autograd through `silu(g) * u` and against finite
    /// differences, each input in turn with the other fixed.
    #[test]
    fn swiglu_backward_matches_autograd_and_finite_differences() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        // Gates over the range where silu bends (and its tails).
        let g = (Tensor::randn(0f32, 3.0, (2, 5, 7), &dev)?).clamp(-12f32, 12f32)?;
        let u = Tensor::randn(0f32, 1.0, (2, 5, 7), &dev)?;
        let value = swiglu(&g, &u, Grad::Tracked)?;
        let want = (candle_nn::ops::silu(&g)? * &u)?;
        let diff = (value - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "swiglu value differs by {diff}");
        let (g2, u2) = (g.clone(), u.clone());
        let by_gate = move |x: &Tensor| swiglu(x, &u2.to_dtype(x.dtype())?, Grad::Tracked);
        check("swiglu gate", &by_gate, &g)?;
        let by_up = move |x: &Tensor| swiglu(&g2.to_dtype(x.dtype())?, x, Grad::Tracked);
        check("swiglu up", &by_up, &u)
    }

    /// Whole rows of blocked keys (padding queries) stay finite and uniform: the skip of
    /// blocked entries applies only below the row's own maximum.
    #[test]
    fn fully_blocked_rows_stay_uniform() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let bias = Tensor::from_vec(vec![-1e9f32; 4], (1, 1, 1, 1, 4), &dev)?;
        let x = Tensor::new(&[[[[0.5f32, -1.0, 2.0, 0.0]]]], &dev)?;
        let y = masked_softmax(&x, &bias, 0.5, Grad::Off)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let sum: f32 = y.iter().sum();
        assert!((sum - 1.0).abs() < 1e-6, "{y:?}");
        assert!(y.iter().all(|v| v.is_finite() && *v > 0.0), "{y:?}");
        Ok(())
    }

    #[test]
    fn masked_softmax_backward_matches_autograd_and_finite_differences() -> candle_core::Result<()>
    {
        let dev = Device::Cpu;
        // Causal mask with one padded key in the second row, as the decoder builds it. The
        // padded query itself (all keys masked) is left out: its output is never used, and
        // f32 cannot resolve scores added to -1e9, so it has no meaningful gradient.
        let mut bias = vec![0f32; 2 * 4 * 4];
        for b in 0..2 {
            for i in 0..4 {
                for j in 0..4 {
                    if j > i || (b == 1 && j == 0 && i > 0) {
                        bias[(b * 4 + i) * 4 + j] = -1e9;
                    }
                }
            }
        }
        let bias = Tensor::from_vec(bias, (2, 1, 1, 4, 4), &dev)?;
        let x = Tensor::randn(0f32, 2.0, (2, 3, 4, 4), &dev)?;
        let op =
            move |x: &Tensor| masked_softmax(x, &bias.to_dtype(x.dtype())?, 0.35, Grad::Tracked);
        check("masked_softmax", &op, &x)
    }
}
