//! Normalisation, rotary embeddings and softmax in two flavours.
//!
//! candle-nn's fused kernels for RMSNorm, softmax and RoPE record no backward pass:
//! a model built on them trains only its embedding, silently. `Grad::Tracked` selects
//! ops that autograd can follow: augur's fused CPU kernels with a hand-written backward
//! ([`crate::train_ops`]) for f32 on the CPU, plain tensor ops elsewhere. `Grad::Off`
//! selects candle's fused kernels for rollouts and evaluation.

use candle_core::{DType, Device, Result, Tensor, D};

use crate::train_ops::{MaskedSoftmax, RmsNorm, Rope, SwiGlu};

/// Whether a forward pass must be differentiable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grad {
    Off,
    Tracked,
}

/// RMSNorm over the last dimension, computed in f32 for half-precision inputs.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64, grad: Grad) -> Result<Tensor> {
    match grad {
        Grad::Off => candle_nn::ops::rms_norm(&x.contiguous()?, weight, eps as f32),
        // The fused op has no gradient for the weight: a trained one (full fine-tuning)
        // takes the composite ops.
        Grad::Tracked if fused_cpu(&[x, weight]) && !weight.is_variable() => {
            x.contiguous()?.apply_op1(RmsNorm {
                weight: weight.clone(),
                eps: eps as f32,
            })
        }
        Grad::Tracked => {
            let dtype = x.dtype();
            let internal = match dtype {
                DType::F16 | DType::BF16 => DType::F32,
                d => d,
            };
            let x32 = x.to_dtype(internal)?;
            let mean_sq = x32.sqr()?.mean_keepdim(D::Minus1)?;
            let normed = x32.broadcast_div(&(mean_sq + eps)?.sqrt()?)?;
            normed.to_dtype(dtype)?.broadcast_mul(weight)
        }
    }
}

/// Whether augur's fused CPU kernels can serve these tensors (f32, on the CPU).
fn fused_cpu(ts: &[&Tensor]) -> bool {
    ts.iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// Attention probabilities `softmax(scores * scale + bias)` over the last dimension, for
/// `scores: [B, H, T, S]` and an additive mask `bias: [B, 1, 1, T, S]` shared by the heads.
pub fn masked_softmax(scores: &Tensor, bias: &Tensor, scale: f64, grad: Grad) -> Result<Tensor> {
    let (b, _, t, s) = scores.dims4()?;
    let bias = bias.reshape((b, t, s))?;
    if fused_cpu(&[scores, &bias]) {
        let op = MaskedSoftmax {
            bias,
            scale: scale as f32,
        };
        return match grad {
            Grad::Off => scores.contiguous()?.apply_op1_no_bwd(&op),
            Grad::Tracked => scores.contiguous()?.apply_op1(op),
        };
    }
    let x = (scores * scale)?.broadcast_add(&bias.unsqueeze(1)?)?;
    match grad {
        Grad::Off => candle_nn::ops::softmax_last_dim(&x.contiguous()?),
        Grad::Tracked => candle_nn::ops::softmax(&x, D::Minus1),
    }
}

/// SwiGLU's gating `silu(gate) * up`: augur's fused op (one parallel pass each way) for
/// tracked f32 on the CPU, candle's ops otherwise.
pub fn swiglu(gate: &Tensor, up: &Tensor, grad: Grad) -> Result<Tensor> {
    match grad {
        Grad::Tracked if fused_cpu(&[gate, up]) => {
            gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)
        }
        _ => candle_nn::ops::silu(gate)? * up,
    }
}

/// Precomputed cos/sin tables for rotate-half RoPE (the HF layout).
pub struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    /// Tables for positions `0..max_positions` and `head_dim` (inverse frequencies
    /// `theta^(-2i/d)`, as HF computes them).
    pub fn new(
        head_dim: usize,
        theta: f64,
        max_positions: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64) as f32)
            .collect();
        let mut angles = Vec::with_capacity(max_positions * half);
        for p in 0..max_positions {
            angles.extend(inv_freq.iter().map(|f| p as f32 * f));
        }
        let angles = Tensor::from_vec(angles, (max_positions, half), device)?;
        Ok(Rotary {
            cos: angles.cos()?.to_dtype(dtype)?,
            sin: angles.sin()?.to_dtype(dtype)?,
        })
    }

    /// Number of positions covered by the tables.
    pub fn max_positions(&self) -> usize {
        self.cos.dim(0).unwrap_or(0)
    }

    /// The cos/sin rows for `positions: [B, T]`, each `[B, T, head_dim / 2]`.
    pub fn gather(&self, positions: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, t) = positions.dims2()?;
        let flat = positions.flatten_all()?;
        let cos = self.cos.index_select(&flat, 0)?.reshape((b, t, ()))?;
        let sin = self.sin.index_select(&flat, 0)?.reshape((b, t, ()))?;
        Ok((cos, sin))
    }
}

/// Applies rotate-half RoPE to `x: [B, H, T, D]` with per-row tables from [`Rotary::gather`].
pub fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor, grad: Grad) -> Result<Tensor> {
    match grad {
        Grad::Off => candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin),
        Grad::Tracked if fused_cpu(&[x, cos, sin]) => x.contiguous()?.apply_op1(Rope {
            cos: cos.clone(),
            sin: sin.clone(),
        }),
        Grad::Tracked => {
            let cos = Tensor::cat(&[cos, cos], D::Minus1)?.unsqueeze(1)?;
            let sin = Tensor::cat(&[sin, sin], D::Minus1)?.unsqueeze(1)?;
            let half = x.dim(D::Minus1)? / 2;
            let x1 = x.narrow(D::Minus1, 0, half)?;
            let x2 = x.narrow(D::Minus1, half, half)?;
            let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
            x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_and_tracked_paths_agree() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 5, 8), &dev)?;
        let w = Tensor::randn(0f32, 1.0, 8, &dev)?;
        let diff = |a: &Tensor, b: &Tensor| -> Result<f32> {
            (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
        };
        let a = rms_norm(&x, &w, 1e-6, Grad::Off)?;
        let b = rms_norm(&x, &w, 1e-6, Grad::Tracked)?;
        assert!(diff(&a, &b)? < 1e-5);
        // The masked softmax against candle's kernel on the scaled, masked scores.
        let bias = Tensor::randn(0f32, 1.0, (2, 1, 1, 5, 8), &dev)?;
        let reference = candle_nn::ops::softmax_last_dim(
            &(&x * 0.125)?.broadcast_add(&bias.reshape((2, 1, 5, 8))?)?,
        )?;
        for grad in [Grad::Off, Grad::Tracked] {
            assert!(diff(&masked_softmax(&x, &bias, 0.125, grad)?, &reference)? < 1e-6);
        }
        let rot = Rotary::new(8, 10_000.0, 32, DType::F32, &dev)?;
        let pos = Tensor::new(&[[0u32, 1, 2, 3, 4], [0, 0, 7, 8, 9]], &dev)?;
        let (cos, sin) = rot.gather(&pos)?;
        let a = apply_rope(&x, &cos, &sin, Grad::Off)?;
        let b = apply_rope(&x, &cos, &sin, Grad::Tracked)?;
        assert!(diff(&a, &b)? < 1e-5);
        // Position 0 is the identity rotation.
        let first = a.narrow(2, 0, 1)?;
        assert!(diff(&first, &x.narrow(2, 0, 1)?)? < 1e-6);
        Ok(())
    }
}
