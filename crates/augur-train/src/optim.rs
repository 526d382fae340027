//! A fused AdamW over flat `f32` buffers, with gradient accumulation, global grad-norm clipping,
//! a NaN/Inf guard and exportable state.
//!
//! candle-nn's `AdamW` runs about ten tensor ops per parameter per step, each allocating a full-size
//! temporary. Here the moments and the accumulated gradient of each parameter live in host `Vec<f32>`s
//! and one loop updates gradient scale, both moments, decay and parameter per element. For a
//! contiguous f32 parameter on the CPU the loop writes into the parameter's storage in place
//! (candle's `InplaceOp1`); any other parameter (another device or dtype) is copied to the host,
//! updated and copied back — the optimizer state stays on the host either way (as in CPU-offloaded
//! Adam), which costs two transfers per step and suits LoRA-sized parameter sets.
//!
//! The update is PyTorch's / candle-nn's AdamW (`t` counts applied steps):
//!
//! ```text
//! g = grad * clip            clip = min(1, max_grad_norm / (||grad||_2 + 1e-6)) over all params
//! m = b1 m + (1 - b1) g      v = b2 v + (1 - b2) g^2
//! p = p (1 - lr wd) - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
//! ```
//!
//! Parameters that received no gradient since the last step are left alone (no decay, no moment
//! update), like PyTorch and candle-nn.

use std::collections::HashMap;
use std::sync::Mutex;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, Device, InplaceOp1, Layout, Storage, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// AdamW options, as they appear in the `[optimizer]` TOML table (the learning rate comes from the
/// schedule, per step).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWConfig {
    /// First-moment decay. Default 0.9.
    pub beta1: f64,
    /// Second-moment decay. Default 0.999.
    pub beta2: f64,
    /// Denominator epsilon. Default 1e-8.
    pub eps: f64,
    /// Decoupled weight decay. Default 0 (HF Trainer / TRL; PyTorch's own default is 0.01).
    pub weight_decay: f64,
    /// Global L2 norm the gradients are clipped to; `None` disables clipping. Default 1.0.
    pub max_grad_norm: Option<f64>,
    /// Non-finite-gradient steps in a row after which `step` returns an error. Default 5.
    pub max_consecutive_skips: usize,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: Some(1.0),
            max_consecutive_skips: 5,
        }
    }
}

impl AdamWConfig {
    /// Checks `0 <= beta < 1`, `eps > 0`, `weight_decay >= 0`, `max_grad_norm > 0`,
    /// `max_consecutive_skips >= 1`.
    pub fn validate(&self) -> Result<()> {
        let unit = |x: f64| x.is_finite() && (0.0..1.0).contains(&x);
        if !unit(self.beta1) || !unit(self.beta2) {
            return Err(Error::Invalid(format!(
                "betas must be in [0, 1), got ({}, {})",
                self.beta1, self.beta2
            )));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(Error::Invalid(format!("eps must be > 0, got {}", self.eps)));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::Invalid(format!(
                "weight_decay must be >= 0, got {}",
                self.weight_decay
            )));
        }
        if let Some(n) = self.max_grad_norm {
            if !(n.is_finite() && n > 0.0) {
                return Err(Error::Invalid(format!(
                    "max_grad_norm must be > 0, got {n}"
                )));
            }
        }
        if self.max_consecutive_skips == 0 {
            return Err(Error::Invalid("max_consecutive_skips must be >= 1".into()));
        }
        Ok(())
    }
}

/// What one call to [`FusedAdamW::step`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// Global L2 norm of the accumulated gradients before clipping (NaN/Inf when skipped).
    pub grad_norm: f64,
    /// Factor the gradients were multiplied by (1 when not clipped).
    pub clip_coef: f64,
    /// The gradients were not finite and nothing was updated.
    pub skipped: bool,
    /// Skipped steps in a row, this one included.
    pub consecutive_skips: usize,
    /// Updates applied so far (the bias-correction step `t`).
    pub step: u64,
}

struct Slot {
    name: String,
    var: Var,
    m: Vec<f32>,
    v: Vec<f32>,
    grad: Vec<f32>,
    has_grad: bool,
}

/// Fused AdamW over a named list of variables.
pub struct FusedAdamW {
    slots: Vec<Slot>,
    cfg: AdamWConfig,
    step: u64,
    consecutive_skips: usize,
}

/// Calls `f` on the tensor's elements as a contiguous f32 slice: borrowed from the storage when it
/// already is one on the CPU, converted and copied otherwise.
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    if t.device().is_cpu() && t.dtype() == DType::F32 {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(CpuStorage::F32(data)), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        {
            return Ok(f(&data[a..b]));
        }
    }
    let host = t
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_device(&Device::Cpu)?
        .to_vec1::<f32>()?;
    Ok(f(&host))
}

/// Per-step scalars of the update, in f32 like the buffers.
#[derive(Clone, Copy)]
struct Coefs {
    clip: f32,
    b1: f32,
    b2: f32,
    one_m_b1: f32,
    one_m_b2: f32,
    scale_m: f32,
    scale_v: f32,
    decay: f32,
    lr: f32,
    eps: f32,
}

/// The fused element loop.
fn adamw_update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: Coefs) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = g * c.clip;
        *m = c.b1 * *m + c.one_m_b1 * g;
        *v = c.b2 * *v + c.one_m_b2 * (g * g);
        let m_hat = *m * c.scale_m;
        let v_hat = *v * c.scale_v;
        *p = *p * c.decay - (m_hat / (v_hat.sqrt() + c.eps)) * c.lr;
    }
}

/// In-place update of a CPU f32 parameter.
struct InPlace<'a> {
    grad: &'a [f32],
    moments: Mutex<(&'a mut [f32], &'a mut [f32])>,
    coefs: Coefs,
}

impl InplaceOp1 for InPlace<'_> {
    fn name(&self) -> &'static str {
        "fused-adamw"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("fused-adamw: parameter is not f32");
        };
        let Some((a, b)) = layout.contiguous_offsets() else {
            candle_core::bail!("fused-adamw: parameter is not contiguous");
        };
        let mut guard = self
            .moments
            .lock()
            .map_err(|_| candle_core::Error::Msg("fused-adamw: poisoned lock".into()))?;
        let (m, v) = &mut *guard;
        adamw_update(&mut data[a..b], self.grad, m, v, self.coefs);
        Ok(())
    }
}

impl FusedAdamW {
    /// An optimizer over `params` (name, variable); names key the exported state and must be unique.
    /// Errors on duplicate names, non-float variables or an invalid config.
    pub fn new(params: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        cfg.validate()?;
        let mut seen = std::collections::HashSet::new();
        let mut slots = Vec::with_capacity(params.len());
        for (name, var) in params {
            if !seen.insert(name.clone()) {
                return Err(Error::Invalid(format!("duplicate parameter name {name:?}")));
            }
            if !var.dtype().is_float() {
                return Err(Error::Invalid(format!(
                    "parameter {name:?} has non-float dtype {:?}",
                    var.dtype()
                )));
            }
            let n = var.elem_count();
            slots.push(Slot {
                name,
                var,
                m: vec![0.0; n],
                v: vec![0.0; n],
                grad: vec![0.0; n],
                has_grad: false,
            });
        }
        Ok(Self {
            slots,
            cfg,
            step: 0,
            consecutive_skips: 0,
        })
    }

    /// The config.
    pub fn config(&self) -> &AdamWConfig {
        &self.cfg
    }

    /// Updates applied so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Adds the gradients in `grads` to the accumulation buffers (micro-batches of one update).
    /// Variables absent from `grads` are skipped. Errors if a gradient's shape differs from its
    /// variable's.
    pub fn accumulate(&mut self, grads: &GradStore) -> Result<()> {
        for s in &mut self.slots {
            let Some(g) = grads.get(s.var.as_tensor()) else {
                continue;
            };
            if g.shape() != s.var.shape() {
                return Err(Error::Shape(format!(
                    "gradient of {:?} is {:?}, parameter is {:?}",
                    s.name,
                    g.dims(),
                    s.var.dims()
                )));
            }
            let first = !s.has_grad;
            with_f32(g, |src| {
                if first {
                    s.grad.copy_from_slice(src);
                } else {
                    s.grad.iter_mut().zip(src).for_each(|(a, b)| *a += b);
                }
            })?;
            s.has_grad = true;
        }
        Ok(())
    }

    /// Drops the accumulated gradients.
    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            s.has_grad = false;
        }
    }

    /// `loss.backward()`, [`accumulate`](Self::accumulate), then [`step`](Self::step).
    pub fn backward_step(&mut self, loss: &Tensor, lr: f64) -> Result<StepReport> {
        let grads = loss.backward()?;
        self.accumulate(&grads)?;
        self.step(lr)
    }

    /// Applies one update with learning rate `lr` from the accumulated gradients, then clears them.
    ///
    /// Non-finite gradients skip the update (state untouched) and are reported; the
    /// `max_consecutive_skips`-th skip in a row returns [`Error::TooManySkippedSteps`]. Errors when
    /// `lr` is negative or not finite, or when no gradient was accumulated.
    pub fn step(&mut self, lr: f64) -> Result<StepReport> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::Invalid(format!("lr must be >= 0, got {lr}")));
        }
        if !self.slots.iter().any(|s| s.has_grad) {
            return Err(Error::Invalid(
                "step called without accumulated gradients".into(),
            ));
        }
        let sq: f64 = self
            .slots
            .iter()
            .filter(|s| s.has_grad)
            .map(|s| {
                s.grad
                    .chunks(4096)
                    .map(|c| c.iter().map(|&x| x * x).sum::<f32>() as f64)
                    .sum::<f64>()
            })
            .sum();
        let grad_norm = sq.sqrt();
        if !grad_norm.is_finite() {
            self.zero_grad();
            self.consecutive_skips += 1;
            if self.consecutive_skips >= self.cfg.max_consecutive_skips {
                return Err(Error::TooManySkippedSteps {
                    count: self.consecutive_skips,
                    limit: self.cfg.max_consecutive_skips,
                });
            }
            return Ok(StepReport {
                grad_norm,
                clip_coef: 1.0,
                skipped: true,
                consecutive_skips: self.consecutive_skips,
                step: self.step,
            });
        }
        let clip_coef = match self.cfg.max_grad_norm {
            Some(max) => (max / (grad_norm + 1e-6)).min(1.0),
            None => 1.0,
        };
        self.step += 1;
        let t = self.step as i32;
        let c = &self.cfg;
        let coefs = Coefs {
            clip: clip_coef as f32,
            b1: c.beta1 as f32,
            b2: c.beta2 as f32,
            one_m_b1: (1.0 - c.beta1) as f32,
            one_m_b2: (1.0 - c.beta2) as f32,
            scale_m: (1.0 / (1.0 - c.beta1.powi(t))) as f32,
            scale_v: (1.0 / (1.0 - c.beta2.powi(t))) as f32,
            decay: (1.0 - lr * c.weight_decay) as f32,
            lr: lr as f32,
            eps: c.eps as f32,
        };
        for s in self.slots.iter_mut().filter(|s| s.has_grad) {
            update_slot(s, coefs)?;
            s.has_grad = false;
        }
        self.consecutive_skips = 0;
        Ok(StepReport {
            grad_norm,
            clip_coef,
            skipped: false,
            consecutive_skips: 0,
            step: self.step,
        })
    }

    /// Optimizer state as named CPU tensors, for a safetensors file: `step` and `consecutive_skips`
    /// (i64 scalars in shape `[1]`), `m.<name>` and `v.<name>` (f32, the parameter's shape).
    /// Accumulated but unapplied gradients are not included: export between updates.
    pub fn export_state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        out.insert(
            "step".to_string(),
            Tensor::new(&[self.step as i64], &Device::Cpu)?,
        );
        out.insert(
            "consecutive_skips".to_string(),
            Tensor::new(&[self.consecutive_skips as i64], &Device::Cpu)?,
        );
        for s in &self.slots {
            let shape = s.var.shape();
            out.insert(
                format!("m.{}", s.name),
                Tensor::from_slice(&s.m, shape, &Device::Cpu)?,
            );
            out.insert(
                format!("v.{}", s.name),
                Tensor::from_slice(&s.v, shape, &Device::Cpu)?,
            );
        }
        Ok(out)
    }

    /// Restores state written by [`export_state`](Self::export_state). Every expected key must be
    /// present with the right shape and no other key may appear; on error nothing is changed.
    pub fn import_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let scalar = |key: &str| -> Result<i64> {
            let t = state
                .get(key)
                .ok_or_else(|| Error::State(format!("missing key {key:?}")))?;
            let v = t
                .flatten_all()?
                .to_dtype(DType::I64)?
                .to_vec1::<i64>()
                .map_err(|e| Error::State(format!("{key:?}: {e}")))?;
            match v.as_slice() {
                [x] if *x >= 0 => Ok(*x),
                _ => Err(Error::State(format!(
                    "{key:?} must be one non-negative integer"
                ))),
            }
        };
        let step = scalar("step")? as u64;
        let skips = scalar("consecutive_skips")? as usize;
        let mut moments = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            let mut pair = Vec::with_capacity(2);
            for prefix in ["m", "v"] {
                let key = format!("{prefix}.{}", s.name);
                let t = state
                    .get(&key)
                    .ok_or_else(|| Error::State(format!("missing key {key:?}")))?;
                if t.shape() != s.var.shape() {
                    return Err(Error::State(format!(
                        "{key:?} has shape {:?}, parameter is {:?}",
                        t.dims(),
                        s.var.dims()
                    )));
                }
                pair.push(with_f32(t, |x| x.to_vec())?);
            }
            moments.push(pair);
        }
        if state.len() != 2 + 2 * self.slots.len() {
            let known: std::collections::HashSet<String> = self
                .slots
                .iter()
                .flat_map(|s| [format!("m.{}", s.name), format!("v.{}", s.name)])
                .chain(["step".to_string(), "consecutive_skips".to_string()])
                .collect();
            let extra = state.keys().find(|k| !known.contains(*k));
            return Err(Error::State(format!("unexpected key {extra:?}")));
        }
        for (s, mut pair) in self.slots.iter_mut().zip(moments) {
            s.v = pair.pop().unwrap_or_default();
            s.m = pair.pop().unwrap_or_default();
            s.has_grad = false;
        }
        self.step = step;
        self.consecutive_skips = skips;
        Ok(())
    }
}

fn update_slot(s: &mut Slot, coefs: Coefs) -> Result<()> {
    let in_place =
        s.var.device().is_cpu() && s.var.dtype() == DType::F32 && s.var.as_tensor().is_contiguous();
    if in_place {
        let op = InPlace {
            grad: &s.grad,
            moments: Mutex::new((&mut s.m, &mut s.v)),
            coefs,
        };
        s.var.as_tensor().inplace_op1(&op)?;
        return Ok(());
    }
    let mut p = with_f32(s.var.as_tensor(), |x| x.to_vec())?;
    adamw_update(&mut p, &s.grad, &mut s.m, &mut s.v, coefs);
    let t = Tensor::from_vec(p, s.var.shape(), &Device::Cpu)?
        .to_dtype(s.var.dtype())?
        .to_device(s.var.device())?;
    s.var.set(&t)?;
    Ok(())
}

#[cfg(test)]
mod tests;
