//! Attention of one new token per row against the KV cache, for decode steps.
//!
//! Through candle this is a batched matmul of `B * kv_heads` tiny products (a few
//! query rows each) for the scores and again for the values, plus a scale, a mask
//! add and a softmax, each its own pass and allocation. Decoding spent about 9% of
//! its time there; this loop does all of it in one pass over the cached keys and
//! values, reading each cached key and value once for all query heads of its group.

use candle_core::{Device, Layout, Storage, Tensor};
use rayon::prelude::*;

/// `softmax(q k^T / sqrt(d) + bias) v` for `q: [B, heads, 1, d]`, cached `k, v:
/// [B, kv_heads, S, d]` (any strides with a unit last stride, e.g. a narrowed cache)
/// and `bias: [B, 1, 1, 1, S]`; returns `[B, 1, heads * d]`. `None` when the inputs
/// are not all f32 on the CPU, so the caller takes the generic path.
pub(crate) fn decode_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
) -> candle_core::Result<Option<Tensor>> {
    let all_f32 = [q, k, v, bias]
        .iter()
        .all(|t| t.dtype() == candle_core::DType::F32 && t.device().is_cpu());
    if !all_f32 {
        return Ok(None);
    }
    let (b, heads, t, d) = q.dims4()?;
    let (_, kv_heads, s, _) = k.dims4()?;
    if t != 1 || heads % kv_heads != 0 || bias.elem_count() != b * s {
        candle_core::bail!("decode attention: unexpected shapes {q:?} {k:?} {bias:?}");
    }
    let (q, bias) = (q.contiguous()?, bias.contiguous()?);
    let rep = heads / kv_heads;
    let (qs, ql) = q.storage_and_layout();
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let (bs, bl) = bias.storage_and_layout();
    let (Storage::Cpu(qs), Storage::Cpu(ks), Storage::Cpu(vs), Storage::Cpu(bs)) =
        (&*qs, &*ks, &*vs, &*bs)
    else {
        return Ok(None);
    };
    let q = &qs.as_slice::<f32>()?[ql.start_offset()..];
    let bias = &bs.as_slice::<f32>()?[bl.start_offset()..];
    let k = Cache::new(ks.as_slice::<f32>()?, kl)?;
    let v = Cache::new(vs.as_slice::<f32>()?, vl)?;
    let scale = 1.0 / (d as f32).sqrt();

    let mut out = vec![0f32; b * heads * d];
    out.par_chunks_mut(rep * d)
        .enumerate()
        .for_each_init(Vec::new, |scores, (unit, out)| {
            let (row, g) = (unit / kv_heads, unit % kv_heads);
            let q = &q[unit * rep * d..(unit + 1) * rep * d];
            let bias = &bias[row * s..(row + 1) * s];
            scores.clear();
            scores.resize(rep * s, 0f32);
            for j in 0..s {
                let key = k.at(row, g, j, d);
                for r in 0..rep {
                    scores[r * s + j] = dot(&q[r * d..(r + 1) * d], key) * scale + bias[j];
                }
            }
            for probs in scores.chunks_mut(s) {
                softmax_in_place(probs);
            }
            for j in 0..s {
                let value = v.at(row, g, j, d);
                for r in 0..rep {
                    axpy(&mut out[r * d..(r + 1) * d], scores[r * s + j], value);
                }
            }
        });
    Ok(Some(Tensor::from_vec(
        out,
        (b, 1, heads * d),
        &Device::Cpu,
    )?))
}

/// A strided `[B, kv_heads, S, d]` view into cache storage.
struct Cache<'a> {
    data: &'a [f32],
    strides: [usize; 3],
}

impl<'a> Cache<'a> {
    fn new(data: &'a [f32], layout: &Layout) -> candle_core::Result<Self> {
        let st = layout.stride();
        if st.len() != 4 || st[3] != 1 {
            candle_core::bail!("decode attention: cache rows must be contiguous");
        }
        Ok(Cache {
            data: &data[layout.start_offset()..],
            strides: [st[0], st[1], st[2]],
        })
    }

    fn at(&self, row: usize, head: usize, pos: usize, d: usize) -> &'a [f32] {
        let o = row * self.strides[0] + head * self.strides[1] + pos * self.strides[2];
        &self.data[o..o + d]
    }
}

/// Dot product with eight independent accumulators, so it vectorises.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y += alpha * x`.
fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

fn softmax_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}
