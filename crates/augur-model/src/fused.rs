//! One matmul for the frozen bases of several projections of the same input
//! (q/k/v, gate/up).
//!
//! Decoding multiplies a few hundred rows by each weight, so every separate GEMM
//! re-reads its input and pays its own packing and dispatch. The fused weight is one
//! buffer that the projections' own base weights are views into, so nothing is
//! stored twice; biases and LoRA adapters stay per projection, which keeps PEFT names,
//! `lora_vars()` and the training path unchanged.

use candle_core::{Tensor, D};

use crate::linear::{BaseWeight, LoraLinear};
use crate::model::WeightDtype;
use crate::packed::PANEL;

/// The concatenated base weights `[sum of out, in]` (dense or packed).
pub(crate) struct FusedBase {
    base: BaseWeight,
}

impl FusedBase {
    /// Fuses the dense bases of `linears` (same input size), packed for the kernel of `dtype`
    /// where supported, and re-points each base at its part of the fused buffer. `None` when
    /// any base is not dense.
    pub fn fuse(
        linears: &mut [&mut LoraLinear],
        dtype: WeightDtype,
    ) -> candle_core::Result<Option<Self>> {
        let mut parts = Vec::with_capacity(linears.len());
        for l in linears.iter() {
            match &l.base {
                BaseWeight::Dense(w) => parts.push(w.clone()),
                _ => return Ok(None),
            }
        }
        let weight = Tensor::cat(&parts, 0)?;
        // Packed parts are whole panels of the fused weight, so each must fill its panels.
        let packed = match linears.iter().all(|l| l.out_features % PANEL == 0) {
            true => BaseWeight::pack(&weight, dtype)?,
            false => None,
        };
        let base = packed.unwrap_or(BaseWeight::Dense(weight));
        let mut offset = 0;
        for l in linears.iter_mut() {
            let out = l.out_features;
            l.base = match &base {
                BaseWeight::Packed {
                    panels,
                    format,
                    inp,
                    ..
                } => BaseWeight::Packed {
                    panels: panels.narrow(0, offset / PANEL, out / PANEL)?,
                    format: *format,
                    out,
                    inp: *inp,
                },
                BaseWeight::Dense(w) => BaseWeight::Dense(w.narrow(0, offset, out)?),
                BaseWeight::Quantized(_) | BaseWeight::Trainable(_) => {
                    unreachable!("fused bases are dense or packed")
                }
            };
            offset += out;
        }
        Ok(Some(FusedBase { base }))
    }

    /// `linears[i].forward(x)` for each `i`, with one matmul for all the bases;
    /// `linears` must be the ones given to [`FusedBase::fuse`], in the same order.
    pub fn forward<const N: usize>(
        &self,
        x: &Tensor,
        linears: [&LoraLinear; N],
        adapters_on: bool,
    ) -> candle_core::Result<[Tensor; N]> {
        let x = x.contiguous()?;
        let y = self.base.matmul(&x)?;
        let mut offset = 0;
        let outs = linears
            .iter()
            .map(|l| {
                let part = y.narrow(D::Minus1, offset, l.out_features)?;
                offset += l.out_features;
                l.finish(&x, part, adapters_on)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(outs.try_into().expect("one output per linear"))
    }
}
