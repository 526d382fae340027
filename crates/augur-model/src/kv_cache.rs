//! A preallocated key/value cache for a batch of rows of different lengths.
//!
//! Rows are left-padded and advance in lock-step, so one write offset serves the
//! whole batch; which cached slots hold real tokens is tracked per row. Rows can
//! be dropped (finished generations) or duplicated (a prompt's prefill copied to
//! its G samples) without recomputing anything.

use candle_core::{CpuStorage, DType, Device, InplaceOp1, Layout, Tensor};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};

/// The precision of the cached keys and values (`[rollout] kv_dtype`, `augur generate
/// --kv-dtype`).
///
/// `Bf16` rounds each key and value to bf16 as it enters the cache. Decode steps read it
/// in the fused CPU kernel ([`crate::decode_attn`]), widening to f32 as they go; every other
/// attention over the cache (the prefill, several new tokens at once) widens the cached
/// slice to f32 first, so all tokens see the same rounded keys and values. It applies to
/// an f32 model on the CPU only: on other devices, or with a bf16/f16 model, the cache keeps
/// the model's dtype (see [`KvDtype::resolve`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvDtype {
    /// The model's own dtype (f32 by default): rollouts and updates see identical keys.
    #[default]
    F32,
    Bf16,
}

impl KvDtype {
    /// The candle dtype the cache of a `model_dtype` model on `device` holds for a request of
    /// `self`; the second value explains a fallback (for a one-line warning). On CUDA the
    /// cache stays in the model's dtype: there is no fused decode kernel there, and widening
    /// the whole cached slice every step would cost more than the smaller reads save.
    pub fn resolve(self, model_dtype: DType, device: &Device) -> (DType, Option<String>) {
        match self {
            KvDtype::F32 => (model_dtype, None),
            KvDtype::Bf16 if !device.is_cpu() => (
                model_dtype,
                Some("kv_dtype = \"bf16\" is for the CPU decode kernel; on this device the KV cache keeps the model's dtype".into()),
            ),
            KvDtype::Bf16 if model_dtype != DType::F32 => (model_dtype, None),
            KvDtype::Bf16 => (DType::BF16, None),
        }
    }
}

impl std::str::FromStr for KvDtype {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => Ok(KvDtype::F32),
            "bf16" => Ok(KvDtype::Bf16),
            other => Err(format!(
                "unknown KV cache dtype {other:?}: expected \"f32\" or \"bf16\""
            )),
        }
    }
}

/// Cached keys and values for every layer, `[B, kv_heads, capacity, head_dim]` each.
pub struct KvCache {
    /// Allocated buffers, possibly with more rows than `batch`: rows are dropped and
    /// duplicated in place within them (see [`KvCache::select_rows`]).
    layers: Vec<(Tensor, Tensor)>,
    /// Row-major `[B, capacity]`: whether a cached slot holds a real (non-pad) token.
    valid: Vec<u8>,
    batch: usize,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// Allocates a cache for `batch` rows of up to `capacity` positions.
    pub fn new(
        cfg: &ModelConfig,
        batch: usize,
        capacity: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let shape = (batch, cfg.num_kv_heads, capacity, cfg.head_dim);
        let layers = (0..cfg.num_layers)
            .map(|_| {
                Ok((
                    Tensor::zeros(shape, dtype, device)?,
                    Tensor::zeros(shape, dtype, device)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache {
            layers,
            valid: vec![0; batch * capacity],
            batch,
            len: 0,
            capacity,
        })
    }

    /// Makes room for `rows` rows, so that [`KvCache::select_rows`] can later grow the
    /// batch to that many without allocating (e.g. a prompt's prefill copied to its samples).
    pub fn reserve_rows(&mut self, rows: usize) -> Result<()> {
        if rows <= self.allocated_rows() {
            return Ok(());
        }
        for (k, v) in self.layers.iter_mut() {
            for t in [k, v] {
                let (_, heads, capacity, head_dim) = t.dims4()?;
                let grown =
                    Tensor::zeros((rows, heads, capacity, head_dim), t.dtype(), t.device())?;
                grown.slice_set(&t.narrow(0, 0, self.batch)?, 0, 0)?;
                *t = grown;
            }
        }
        Ok(())
    }

    fn allocated_rows(&self) -> usize {
        self.layers.first().map_or(0, |(k, _)| k.dims()[0])
    }

    /// Number of rows.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Number of filled positions (shared by all rows).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Validity of cached slot `pos` in `row`.
    pub(crate) fn is_valid(&self, row: usize, pos: usize) -> bool {
        self.valid[row * self.capacity + pos] != 0
    }

    /// Checks that `t` more positions fit.
    pub(crate) fn reserve(&self, t: usize) -> Result<()> {
        if self.len + t > self.capacity {
            return Err(ModelError::Input(format!(
                "KV cache full: {} cached + {t} new positions exceed capacity {}",
                self.len, self.capacity
            )));
        }
        Ok(())
    }

    /// The dtype the keys and values are stored in.
    pub fn dtype(&self) -> DType {
        self.layers.first().map_or(DType::F32, |(k, _)| k.dtype())
    }

    /// Writes layer `layer`'s new keys/values `[B, kv_heads, t, head_dim]` at the
    /// current offset (rounded to the cache's dtype) and returns all cached keys/values
    /// including them, in the cache's dtype.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let t = k.dim(2)?;
        let (ck, cv) = &self.layers[layer];
        let (ck, cv) = (ck.narrow(0, 0, self.batch)?, cv.narrow(0, 0, self.batch)?);
        // `to_dtype` is a no-op when the dtypes agree (the default f32 cache).
        ck.slice_set(&k.to_dtype(ck.dtype())?.contiguous()?, 2, self.len)?;
        cv.slice_set(&v.to_dtype(cv.dtype())?.contiguous()?, 2, self.len)?;
        Ok((
            ck.narrow(2, 0, self.len + t)?,
            cv.narrow(2, 0, self.len + t)?,
        ))
    }

    /// Records the validity of `t` new positions (row-major `[B, t]`) and advances the offset.
    pub(crate) fn advance(&mut self, new_valid: &[u8], t: usize) {
        for row in 0..self.batch {
            let dst = row * self.capacity + self.len;
            self.valid[dst..dst + t].copy_from_slice(&new_valid[row * t..(row + 1) * t]);
        }
        self.len += t;
    }

    /// Keeps the listed rows in the given order; an index may repeat (to copy a
    /// prefilled prompt to several samples) and rows not listed are dropped.
    pub fn select_rows(&mut self, rows: &[usize]) -> Result<()> {
        if let Some(&bad) = rows.iter().find(|&&r| r >= self.batch) {
            return Err(ModelError::Input(format!(
                "row {bad} out of range for a cache of {} rows",
                self.batch
            )));
        }
        if rows.is_empty() {
            return Err(ModelError::Input(
                "select_rows needs at least one row".into(),
            ));
        }
        let device = self.layers[0].0.device().clone();
        // Row `i` can take row `rows[i]` without a temporary copy when all `rows[i] >= i`
        // (copying in ascending order) or all `rows[i] <= i` (descending): slot `s` is
        // written at step `s` only, after every read of it. Finished generations leave the
        // batch the first way (the engine moves tail rows into the freed slots) and
        // prompts are copied to their samples the second way. Copying only the moved
        // rows' filled positions in place beats re-allocating the whole cache (that was
        // an eighth of decode time, plus page faults).
        let ascending = rows.iter().enumerate().all(|(i, &r)| r >= i);
        let descending = rows.iter().enumerate().all(|(i, &r)| r <= i);
        let fits = rows.len() <= self.allocated_rows();
        if device.is_cpu() && fits && (ascending || descending) {
            let op = CompactRows {
                rows,
                filled: self.len,
                descending: !ascending,
            };
            for (k, v) in &self.layers {
                k.inplace_op1(&op)?;
                v.inplace_op1(&op)?;
            }
        } else {
            let idx = Tensor::from_vec(
                rows.iter().map(|&r| r as u32).collect::<Vec<_>>(),
                rows.len(),
                &device,
            )?;
            for (k, v) in self.layers.iter_mut() {
                *k = k.narrow(0, 0, self.batch)?.index_select(&idx, 0)?;
                *v = v.narrow(0, 0, self.batch)?.index_select(&idx, 0)?;
            }
        }
        let mut valid = Vec::with_capacity(rows.len() * self.capacity);
        for &r in rows {
            valid.extend_from_slice(&self.valid[r * self.capacity..(r + 1) * self.capacity]);
        }
        self.valid = valid;
        self.batch = rows.len();
        Ok(())
    }
}

/// Copies row `rows[i]` to row `i` of a `[B, heads, capacity, head_dim]` buffer in
/// place, for the first `filled` positions only; requires `rows[i] >= i` for all `i`,
/// or `rows[i] <= i` for all `i` and `descending`.
struct CompactRows<'a> {
    rows: &'a [usize],
    filled: usize,
    descending: bool,
}

impl CompactRows<'_> {
    fn apply<T: Copy>(&self, data: &mut [T], layout: &Layout) -> candle_core::Result<()> {
        let (_, heads, capacity, head_dim) = layout.shape().dims4()?;
        if !layout.is_contiguous() {
            candle_core::bail!("KV cache buffer must be contiguous");
        }
        let data = &mut data[layout.start_offset()..];
        let row_len = heads * capacity * head_dim;
        let span = self.filled * head_dim;
        let mut moves: Vec<(usize, usize)> = self
            .rows
            .iter()
            .copied()
            .enumerate()
            .filter(|(i, r)| i != r)
            .collect();
        if self.descending {
            moves.reverse();
        }
        for (dst, src) in moves {
            for h in 0..heads {
                let from = src * row_len + h * capacity * head_dim;
                let to = dst * row_len + h * capacity * head_dim;
                data.copy_within(from..from + span, to);
            }
        }
        Ok(())
    }
}

impl InplaceOp1 for CompactRows<'_> {
    fn name(&self) -> &'static str {
        "kv-compact-rows"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        match storage {
            CpuStorage::F32(d) => self.apply(d, layout),
            CpuStorage::F16(d) => self.apply(d, layout),
            CpuStorage::BF16(d) => self.apply(d, layout),
            CpuStorage::F64(d) => self.apply(d, layout),
            _ => candle_core::bail!("KV cache compaction: unsupported dtype"),
        }
    }
}
