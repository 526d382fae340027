//! A linear layer with a frozen base weight and an optional trainable LoRA adapter.
//!
//! `y = x W^T + b + (alpha / r) * (x A^T) B^T`. The adapter is applied unmerged so
//! that the rollout engine always samples from the current policy (no weight-sync
//! step), and it can be switched off per forward call, which is how the GRPO
//! reference policy is computed without a second copy of the model.

use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor, Var};
use rand::Rng;

use crate::frozen::{FrozenMatmul, FrozenQMatmul};
use crate::model::WeightDtype;
pub use crate::packed::PanelFormat;
use crate::packed::{self, PackedMatmul};
use crate::packed_bf16;

/// The base weight of a linear layer, `[out, in]`: frozen (LoRA trains beside it), or
/// trainable itself under full fine-tuning.
#[derive(Clone)]
pub enum BaseWeight {
    Dense(Tensor),
    /// Kept in its GGUF quantization (QLoRA style); dequantized only for backward.
    Quantized(Arc<QTensor>),
    /// Packed on the CPU for the register-blocked kernels (see [`crate::packed`]): f32
    /// panels `[ceil(out / 16), in, 16]`, or, with [`PanelFormat::Bf16`] (`[model] dtype =
    /// "bf16"`, see [`crate::packed_bf16`]), bf16 panels `[ceil(out / 16), ceil(in / 2), 32]`.
    Packed {
        panels: Tensor,
        format: PanelFormat,
        out: usize,
        inp: usize,
    },
    /// A trainable dense weight (full fine-tuning, see [`crate::full`]): a plain matmul, so
    /// autograd computes the weight's gradient as well as the input's.
    Trainable(Var),
}

impl BaseWeight {
    /// `x @ W^T` for a contiguous `x: [.., in]`, with a backward pass for `x` only.
    pub(crate) fn matmul(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            BaseWeight::Dense(w) => x.apply_op1(FrozenMatmul { weight: w.clone() }),
            BaseWeight::Quantized(q) => x.apply_op1(FrozenQMatmul { weight: q.clone() }),
            BaseWeight::Packed {
                panels,
                format,
                out,
                inp,
            } => x.apply_op1(PackedMatmul {
                panels: panels.clone(),
                out: *out,
                inp: *inp,
                format: *format,
            }),
            BaseWeight::Trainable(w) => {
                let (k, n) = (x.dim(candle_core::D::Minus1)?, w.dim(0)?);
                let mut out_dims = x.dims().to_vec();
                *out_dims.last_mut().expect("x has a feature axis") = n;
                x.reshape(((), k))?
                    .matmul(&w.as_tensor().t()?)?
                    .reshape(out_dims)
            }
        }
    }

    /// Packs a dense CPU weight `w: [out, in]` for the kernel of `dtype`; `None` where this
    /// weight or CPU cannot use it (the caller keeps candle's matmul).
    pub(crate) fn pack(w: &Tensor, dtype: WeightDtype) -> candle_core::Result<Option<Self>> {
        let (out, inp) = w.dims2()?;
        let (panels, format) = match dtype {
            WeightDtype::Bf16 if packed_bf16::supported(w) => {
                (packed_bf16::pack(w)?, PanelFormat::Bf16)
            }
            WeightDtype::F32 if packed::supported(w) => (packed::pack(w)?, PanelFormat::F32),
            _ => return Ok(None),
        };
        Ok(Some(BaseWeight::Packed {
            panels,
            format,
            out,
            inp,
        }))
    }
}

/// The trainable low-rank update of one linear layer.
#[derive(Clone)]
pub struct Adapter {
    /// `[r, in]`, PEFT's `lora_A`.
    pub a: Var,
    /// `[out, r]`, PEFT's `lora_B`; zero at init so the adapted model starts equal to the base.
    pub b: Var,
    /// `alpha / r`.
    pub scale: f64,
}

impl Adapter {
    /// PEFT's default init: A ~ kaiming-uniform(a=sqrt 5) = U(-1/sqrt(in), 1/sqrt(in)), B = 0.
    pub fn init(
        in_features: usize,
        out_features: usize,
        rank: usize,
        alpha: f64,
        dtype: DType,
        device: &Device,
        rng: &mut impl Rng,
    ) -> candle_core::Result<Self> {
        let bound = 1.0 / (in_features as f32).sqrt();
        let a: Vec<f32> = (0..rank * in_features)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let a = Tensor::from_vec(a, (rank, in_features), device)?.to_dtype(dtype)?;
        let b = Tensor::zeros((out_features, rank), dtype, device)?;
        Ok(Adapter {
            a: Var::from_tensor(&a)?,
            b: Var::from_tensor(&b)?,
            scale: alpha / rank as f64,
        })
    }

    /// The dense update `scale * B A`, `[out, in]`, for merging into the base weight.
    pub fn delta(&self) -> candle_core::Result<Tensor> {
        self.b.as_tensor().matmul(self.a.as_tensor())? * self.scale
    }
}

/// Linear layer = frozen base (+ bias) + optional adapter.
#[derive(Clone)]
pub struct LoraLinear {
    pub base: BaseWeight,
    pub bias: Option<Tensor>,
    pub adapter: Option<Adapter>,
    pub in_features: usize,
    pub out_features: usize,
}

impl LoraLinear {
    pub fn new(base: BaseWeight, bias: Option<Tensor>) -> candle_core::Result<Self> {
        let (out_features, in_features) = match &base {
            BaseWeight::Dense(w) => w.dims2()?,
            BaseWeight::Quantized(q) => q.shape().dims2()?,
            BaseWeight::Packed { out, inp, .. } => (*out, *inp),
            BaseWeight::Trainable(w) => w.dims2()?,
        };
        Ok(LoraLinear {
            base,
            bias,
            adapter: None,
            in_features,
            out_features,
        })
    }

    /// `x: [.., in] -> [.., out]`; the adapter contributes only when `adapters_on`.
    pub fn forward(&self, x: &Tensor, adapters_on: bool) -> candle_core::Result<Tensor> {
        let x = x.contiguous()?;
        let y = self.base.matmul(&x)?;
        self.finish(&x, y, adapters_on)
    }

    /// Adds the bias and (when `adapters_on`) the adapter update to the base output
    /// `y = x W^T`, which may come from a fused matmul (see [`crate::fused`]).
    pub(crate) fn finish(
        &self,
        x: &Tensor,
        mut y: Tensor,
        adapters_on: bool,
    ) -> candle_core::Result<Tensor> {
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        if let (true, Some(ad)) = (adapters_on, &self.adapter) {
            // The scale goes on the rank-r activation: the same product as scaling the
            // output, without a full-width pass each way on one thread.
            let low = (x.broadcast_matmul(&ad.a.as_tensor().t()?)? * ad.scale)?;
            let up = low.broadcast_matmul(&ad.b.as_tensor().t()?)?;
            y = (y + up)?;
        }
        Ok(y)
    }

    /// `g @ W` for the gradient `g: [.., out]` of the base output: the input's gradient
    /// through the frozen base, for ops that run the backward themselves (the chunked LM head).
    pub fn base_grad_input(&self, g: &Tensor) -> candle_core::Result<Tensor> {
        match &self.base {
            BaseWeight::Packed {
                panels,
                format,
                out,
                inp,
            } => packed::grad_input(panels, *format, *out, *inp, g),
            _ => g.broadcast_matmul(&self.dense_weight()?),
        }
    }

    /// The base weight as a dense tensor (dequantized or unpacked if needed; bf16 panels give
    /// their bf16 values widened to f32).
    pub fn dense_weight(&self) -> candle_core::Result<Tensor> {
        match &self.base {
            BaseWeight::Dense(w) => Ok(w.clone()),
            BaseWeight::Quantized(q) => q.dequantize(&q.device()),
            BaseWeight::Packed {
                panels,
                format: PanelFormat::F32,
                out,
                ..
            } => packed::unpack(panels, *out),
            BaseWeight::Packed {
                panels,
                format: PanelFormat::Bf16,
                out,
                inp,
            } => packed_bf16::unpack(panels, *out, *inp),
            BaseWeight::Trainable(w) => Ok(w.as_tensor().clone()),
        }
    }

    /// Packs a dense base for the CPU matmul of `dtype` where supported (f32 panels on
    /// AVX2 + FMA, bf16 panels on AVX512-BF16); otherwise it stays dense. Model loading does
    /// this for every frozen linear; public so kernels can be timed on their own.
    pub fn pack(&mut self, dtype: WeightDtype) -> candle_core::Result<()> {
        if let BaseWeight::Dense(w) = &self.base {
            if let Some(packed) = BaseWeight::pack(w, dtype)? {
                self.base = packed;
            }
        }
        Ok(())
    }

    /// Number of frozen parameters (weight + bias).
    pub fn base_param_count(&self) -> usize {
        self.in_features * self.out_features + self.bias.as_ref().map_or(0, |b| b.elem_count())
    }
}
