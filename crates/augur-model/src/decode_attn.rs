//! Attention of one new token per row against the KV cache, for decode steps.
//!
//! Through candle this is a batched matmul of `B * kv_heads` tiny products (a few
//! query rows each) for the scores and again for the values, plus a scale, a mask
//! add and a softmax, each its own pass and allocation. Decoding spent about 9% of
//! its time there; this loop does all of it in one pass over the cached keys and
//! values, reading each cached key and value once for all query heads of its group.
//!
//! The cache may hold f32 or bf16 (`KvDtype::Bf16`): bf16 keys and values are widened to
//! f32 as they are read (a 16-bit shift, exact on any CPU) and every product and sum is f32,
//! in the same order as for an f32 cache, so a bf16 cache gives exactly what an f32 cache
//! holding the same rounded values gives, for half the bytes read.

use candle_core::{CpuStorage, DType, Device, Layout, Storage, Tensor};
use half::bf16;
use rayon::prelude::*;

/// `softmax(q k^T / sqrt(d) + bias) v` for `q: [B, heads, 1, d]`, cached `k, v:
/// [B, kv_heads, S, d]` (any strides with a unit last stride, e.g. a narrowed cache)
/// and `bias: [B, 1, 1, 1, S]`; returns `[B, 1, heads * d]`. `None` unless all are on the
/// CPU, `q` and `bias` f32 and the cache f32 or bf16 (both `k` and `v` alike), so the
/// caller takes the generic path.
pub(crate) fn decode_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
) -> candle_core::Result<Option<Tensor>> {
    let on_cpu = [q, k, v, bias].iter().all(|t| t.device().is_cpu());
    let f32_inputs = q.dtype() == DType::F32 && bias.dtype() == DType::F32;
    let cache_dtype = matches!(k.dtype(), DType::F32 | DType::BF16) && v.dtype() == k.dtype();
    if !(on_cpu && f32_inputs && cache_dtype) {
        return Ok(None);
    }
    let (b, heads, t, d) = q.dims4()?;
    let (_, kv_heads, s, _) = k.dims4()?;
    if t != 1 || heads % kv_heads != 0 || bias.elem_count() != b * s {
        candle_core::bail!("decode attention: unexpected shapes {q:?} {k:?} {bias:?}");
    }
    let (q, bias) = (q.contiguous()?, bias.contiguous()?);
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
    let shape = Shape {
        b,
        heads,
        kv_heads,
        s,
        d,
    };
    let out = match (ks, vs) {
        (CpuStorage::F32(kd), CpuStorage::F32(vd)) => attend(
            q,
            &Cache::new(kd, kl)?,
            &Cache::new(vd, vl)?,
            bias,
            shape,
            true,
        ),
        (CpuStorage::BF16(kd), CpuStorage::BF16(vd)) => attend(
            q,
            &Cache::new(kd, kl)?,
            &Cache::new(vd, vl)?,
            bias,
            shape,
            true,
        ),
        _ => return Ok(None),
    };
    Ok(Some(Tensor::from_vec(
        out,
        (b, 1, heads * d),
        &Device::Cpu,
    )?))
}

/// The dimensions of one decode attention call.
#[derive(Clone, Copy)]
struct Shape {
    b: usize,
    heads: usize,
    kv_heads: usize,
    s: usize,
    d: usize,
}

/// A cached element read as f32.
trait Widen: Copy + Sync {
    /// `row` as f32: itself for f32, widened into `buf` (which it returns) otherwise.
    fn as_f32<'b>(row: &'b [Self], buf: &'b mut [f32]) -> &'b [f32];
}

impl Widen for f32 {
    #[inline(always)]
    fn as_f32<'b>(row: &'b [f32], _: &'b mut [f32]) -> &'b [f32] {
        row
    }
}

impl Widen for bf16 {
    /// bf16 is the top half of an f32: widening is a shift, exact, and vectorises.
    #[inline(always)]
    fn as_f32<'b>(row: &'b [bf16], buf: &'b mut [f32]) -> &'b [f32] {
        for (w, x) in buf.iter_mut().zip(row) {
            *w = f32::from_bits(u32::from(x.to_bits()) << 16);
        }
        &buf[..row.len()]
    }
}

/// The attention loop for cache elements `E`; returns `[B, heads, d]` row-major. With `simd`
/// (and a CPU that has AVX2) each unit runs in a copy of the loop compiled for AVX2: the same
/// operations in the same order (Rust never fuses or reorders float operations), so the same
/// bits, in 8-wide instead of 4-wide vectors.
fn attend<E: Widen>(
    q: &[f32],
    k: &Cache<E>,
    v: &Cache<E>,
    bias: &[f32],
    shape: Shape,
    simd: bool,
) -> Vec<f32> {
    let Shape {
        b,
        heads,
        kv_heads,
        d,
        ..
    } = shape;
    let rep = heads / kv_heads;
    let mut out = vec![0f32; b * heads * d];
    #[cfg(target_arch = "x86_64")]
    let avx2 = simd && is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    let avx2 = {
        let _ = simd;
        false
    };
    out.par_chunks_mut(rep * d).enumerate().for_each_init(
        Scratch::default,
        |scratch, (unit, out)| {
            let job = Unit {
                q,
                k,
                v,
                bias,
                shape,
                unit,
            };
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: the CPU has AVX2 (checked above).
                unsafe { attend_unit_avx2(&job, scratch, out) };
                return;
            }
            let _ = avx2;
            attend_unit(&job, scratch, out);
        },
    );
    out
}

/// One `(row, KV head)` pair of a decode attention call: its `rep` query heads.
struct Unit<'a, 'c, E> {
    q: &'a [f32],
    k: &'a Cache<'c, E>,
    v: &'a Cache<'c, E>,
    bias: &'a [f32],
    shape: Shape,
    unit: usize,
}

/// Per-thread buffers: the scores of a unit's query heads, one widened key row, and the
/// unit's values as one f32 block (when they are not already stored so).
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    row: Vec<f32>,
    values: Vec<f32>,
}

/// [`attend_unit`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn attend_unit_avx2<E: Widen>(job: &Unit<E>, scratch: &mut Scratch, out: &mut [f32]) {
    attend_unit(job, scratch, out)
}

/// Scores, softmax and weighted values of one unit's `rep` query heads into `out: [rep, d]`
/// (zeroed by the caller).
#[inline(always)]
fn attend_unit<E: Widen>(job: &Unit<E>, scratch: &mut Scratch, out: &mut [f32]) {
    let Shape {
        heads,
        kv_heads,
        s,
        d,
        ..
    } = job.shape;
    let rep = heads / kv_heads;
    let scale = 1.0 / (d as f32).sqrt();
    let unit = job.unit;
    let (row, g) = (unit / kv_heads, unit % kv_heads);
    let q = &job.q[unit * rep * d..(unit + 1) * rep * d];
    let bias = &job.bias[row * s..(row + 1) * s];
    let Scratch {
        scores,
        row: buf,
        values: vbuf,
    } = scratch;
    scores.clear();
    scores.resize(rep * s, 0f32);
    buf.resize(d, 0f32);
    for j in 0..s {
        let key = E::as_f32(job.k.at(row, g, j, d), buf);
        for r in 0..rep {
            scores[r * s + j] = dot(&q[r * d..(r + 1) * d], key) * scale + bias[j];
        }
    }
    for probs in scores.chunks_mut(s) {
        softmax_in_place(probs);
    }
    let values: &[f32] = match job.v.block(row, g, s, d) {
        Some(block) => {
            vbuf.resize(s * d, 0f32);
            E::as_f32(block, vbuf)
        }
        None => {
            vbuf.clear();
            for j in 0..s {
                vbuf.extend_from_slice(E::as_f32(job.v.at(row, g, j, d), buf));
            }
            vbuf
        }
    };
    for (r, probs) in scores.chunks(s).enumerate() {
        weighted_rows(&mut out[r * d..(r + 1) * d], probs, values, d);
    }
}

/// `out[i] += sum_j p[j] * values[j * d + i]`, each element summed over `j` in order (the
/// order of one [`axpy`] per value row, so the same bits), `LANES` outputs at a time held in
/// registers instead of loaded and stored once per value row.
#[inline(always)]
fn weighted_rows(out: &mut [f32], p: &[f32], values: &[f32], d: usize) {
    const LANES: usize = 32;
    let whole = d / LANES * LANES;
    for c in (0..whole).step_by(LANES) {
        let chunk: &mut [f32; LANES] = (&mut out[c..c + LANES]).try_into().expect("LANES wide");
        let mut acc = *chunk;
        for (j, &pj) in p.iter().enumerate() {
            let v: &[f32; LANES] = values[j * d + c..j * d + c + LANES]
                .try_into()
                .expect("LANES wide");
            for i in 0..LANES {
                acc[i] += pj * v[i];
            }
        }
        *chunk = acc;
    }
    if whole < d {
        for (j, &pj) in p.iter().enumerate() {
            axpy(&mut out[whole..d], pj, &values[j * d + whole..(j + 1) * d]);
        }
    }
}

/// A strided `[B, kv_heads, S, d]` view into cache storage.
struct Cache<'a, E> {
    data: &'a [E],
    strides: [usize; 3],
}

impl<'a, E> Cache<'a, E> {
    fn new(data: &'a [E], layout: &Layout) -> candle_core::Result<Self> {
        let st = layout.stride();
        if st.len() != 4 || st[3] != 1 {
            candle_core::bail!("decode attention: cache rows must be contiguous");
        }
        Ok(Cache {
            data: &data[layout.start_offset()..],
            strides: [st[0], st[1], st[2]],
        })
    }

    fn at(&self, row: usize, head: usize, pos: usize, d: usize) -> &'a [E] {
        let o = row * self.strides[0] + head * self.strides[1] + pos * self.strides[2];
        &self.data[o..o + d]
    }

    /// Positions `0..s` of `(row, head)` as one `[s, d]` slice, when they are stored so (the
    /// KV cache's layout).
    fn block(&self, row: usize, head: usize, s: usize, d: usize) -> Option<&'a [E]> {
        let o = row * self.strides[0] + head * self.strides[1];
        (self.strides[2] == d).then(|| &self.data[o..o + s * d])
    }
}

/// Dot product with eight independent accumulators, so it vectorises.
#[inline(always)]
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
#[inline(always)]
fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

#[inline(always)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    const B: usize = 2;
    const HEADS: usize = 6;
    const KV_HEADS: usize = 2;
    /// Capacity of the test cache; the kernel reads the first `S` positions (a narrowed view).
    const CAP: usize = 9;
    const S: usize = 7;
    /// One 32-lane block of the weighted sum plus a tail, and not a multiple of 8, so the dot
    /// product's tail runs too.
    const D: usize = 44;

    struct Case {
        q: Vec<f32>,
        k: Vec<f32>,
        v: Vec<f32>,
        bias: Vec<f32>,
    }

    /// Seeded inputs: `q [B, HEADS, 1, D]`, caches `[B, KV_HEADS, CAP, D]`, and a bias that
    /// blocks row 0's first two positions and row 1's fourth (padding).
    fn case() -> Case {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut draw = |n: usize, scale: f32| -> Vec<f32> {
            (0..n).map(|_| rng.random_range(-scale..scale)).collect()
        };
        let mut bias = vec![0f32; B * S];
        for masked in [0, 1, S + 3] {
            bias[masked] = -1e9;
        }
        Case {
            q: draw(B * HEADS * D, 2.0),
            k: draw(B * KV_HEADS * CAP * D, 2.0),
            v: draw(B * KV_HEADS * CAP * D, 3.0),
            bias,
        }
    }

    fn round_bf16(x: &[f32]) -> Vec<f32> {
        x.iter().map(|&x| bf16::from_f32(x).to_f32()).collect()
    }

    /// The kernel on a cache of `dtype` holding `k`, `v`, narrowed to its first `S` positions
    /// the way the KV cache hands it over.
    fn kernel(c: &Case, k: &[f32], v: &[f32], dtype: DType) -> Vec<f32> {
        let cache = |x: &[f32]| {
            Tensor::from_slice(x, (B, KV_HEADS, CAP, D), &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
                .narrow(2, 0, S)
                .unwrap()
        };
        let q = Tensor::from_slice(&c.q, (B, HEADS, 1, D), &Device::Cpu).unwrap();
        let bias = Tensor::from_slice(&c.bias, (B, 1, 1, 1, S), &Device::Cpu).unwrap();
        decode_attention(&q, &cache(k), &cache(v), &bias)
            .unwrap()
            .expect("f32 and bf16 caches take the fused kernel")
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    /// Grouped-query attention written out in f64 from its definition: query head `h` reads
    /// KV head `h / (HEADS / KV_HEADS)`.
    fn naive(c: &Case, k: &[f32], v: &[f32]) -> Vec<f64> {
        let rep = HEADS / KV_HEADS;
        let at = |x: &[f32], row: usize, g: usize, j: usize, i: usize| {
            f64::from(x[((row * KV_HEADS + g) * CAP + j) * D + i])
        };
        let mut out = vec![0f64; B * HEADS * D];
        for row in 0..B {
            for h in 0..HEADS {
                let g = h / rep;
                let q = &c.q[(row * HEADS + h) * D..][..D];
                let scores: Vec<f64> = (0..S)
                    .map(|j| {
                        let dot: f64 = (0..D).map(|i| f64::from(q[i]) * at(k, row, g, j, i)).sum();
                        dot / (D as f64).sqrt() + f64::from(c.bias[row * S + j])
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                for i in 0..D {
                    out[(row * HEADS + h) * D + i] = (0..S)
                        .map(|j| weights[j] / total * at(v, row, g, j, i))
                        .sum();
                }
            }
        }
        out
    }

    fn max_diff(a: &[f32], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, y)| (f64::from(x) - y).abs())
            .fold(0.0, f64::max)
    }

    /// [`attend`] with and without its AVX2 copy of the loop, on an f32 and a bf16 cache.
    fn portable_and_simd(c: &Case, dtype: DType) -> (Vec<f32>, Vec<f32>) {
        let cache = |x: &[f32]| {
            Tensor::from_slice(x, (B, KV_HEADS, CAP, D), &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
                .narrow(2, 0, S)
                .unwrap()
        };
        let (k, v) = (cache(&c.k), cache(&c.v));
        let (ks, kl) = k.storage_and_layout();
        let (vs, vl) = v.storage_and_layout();
        let (Storage::Cpu(ks), Storage::Cpu(vs)) = (&*ks, &*vs) else {
            unreachable!("CPU tensors")
        };
        let shape = Shape {
            b: B,
            heads: HEADS,
            kv_heads: KV_HEADS,
            s: S,
            d: D,
        };
        let run = |simd| match (ks, vs) {
            (CpuStorage::F32(kd), CpuStorage::F32(vd)) => {
                let (k, v) = (Cache::new(kd, kl).unwrap(), Cache::new(vd, vl).unwrap());
                attend(&c.q, &k, &v, &c.bias, shape, simd)
            }
            (CpuStorage::BF16(kd), CpuStorage::BF16(vd)) => {
                let (k, v) = (Cache::new(kd, kl).unwrap(), Cache::new(vd, vl).unwrap());
                attend(&c.q, &k, &v, &c.bias, shape, simd)
            }
            _ => unreachable!("f32 or bf16"),
        };
        (run(false), run(true))
    }

    /// The AVX2 copy of the loop gives the portable loop's bits (so the default f32 path's
    /// results do not depend on the CPU), for both cache dtypes.
    #[test]
    fn simd_loop_gives_the_portable_bits() {
        let c = case();
        for dtype in [DType::F32, DType::BF16] {
            let (portable, simd) = portable_and_simd(&c, dtype);
            assert_eq!(portable, simd, "{dtype:?}");
        }
    }

    /// The f32 cache against the definition, to f32 round-off.
    #[test]
    fn f32_cache_matches_the_definition() {
        let c = case();
        let got = kernel(&c, &c.k, &c.v, DType::F32);
        let d = max_diff(&got, &naive(&c, &c.k, &c.v));
        assert!(d < 1e-5, "max |d| {d}");
    }

    /// A bf16 cache gives exactly what an f32 cache holding the same bf16-rounded keys and
    /// values gives (widening is exact and the f32 operations run in the same order), and both
    /// match the definition on the rounded values.
    #[test]
    fn bf16_cache_equals_f32_cache_of_the_rounded_values() {
        let c = case();
        let (k, v) = (round_bf16(&c.k), round_bf16(&c.v));
        let from_bf16 = kernel(&c, &c.k, &c.v, DType::BF16);
        assert_eq!(from_bf16, kernel(&c, &k, &v, DType::F32));
        let d = max_diff(&from_bf16, &naive(&c, &k, &v));
        assert!(d < 1e-5, "max |d| {d}");
    }

    /// Against the unrounded f32 keys and values, a bf16 cache is off by at most the
    /// first-order effect of rounding each of them by a relative `u = 2^-8`, derived per query
    /// head: the values move the output by at most `u max|v|`; each score `q.k / sqrt(d)` moves
    /// by at most `ds = u sum|q||k| / sqrt(d)`, which moves the softmax weights by at most
    /// `2 ds` in L1 and so the output by `2 ds max|v|` (10% slack for second-order terms). The
    /// outputs differ (the rounding really happened).
    #[test]
    fn bf16_cache_is_within_the_rounding_bound_of_f32_values() {
        let c = case();
        let u = 2f64.powi(-8);
        let got = kernel(&c, &c.k, &c.v, DType::BF16);
        let want = naive(&c, &c.k, &c.v);
        let rep = HEADS / KV_HEADS;
        let (mut any_diff, mut worst_share) = (false, 0f64);
        for row in 0..B {
            for h in 0..HEADS {
                let g = h / rep;
                let q = &c.q[(row * HEADS + h) * D..][..D];
                let cached =
                    |x: &[f32], j: usize| x[((row * KV_HEADS + g) * CAP + j) * D..][..D].to_vec();
                let live: Vec<usize> = (0..S).filter(|&j| c.bias[row * S + j] == 0.0).collect();
                let ds = live
                    .iter()
                    .map(|&j| {
                        let key = cached(&c.k, j);
                        let s: f64 = q
                            .iter()
                            .zip(&key)
                            .map(|(a, b)| f64::from((a * b).abs()))
                            .sum();
                        u * s / (D as f64).sqrt()
                    })
                    .fold(0.0, f64::max);
                let vmax = live
                    .iter()
                    .flat_map(|&j| cached(&c.v, j))
                    .map(|x| f64::from(x.abs()))
                    .fold(0.0, f64::max);
                let bound = 1.1 * (u * vmax + 2.0 * ds * vmax);
                let at = (row * HEADS + h) * D;
                let d = max_diff(&got[at..at + D], &want[at..at + D]);
                any_diff |= d > 1e-6;
                worst_share = worst_share.max(d / bound);
                assert!(d <= bound, "row {row} head {h}: |d| {d} > bound {bound}");
            }
        }
        eprintln!("bf16 cache vs f32 values: worst error {worst_share:.3} of its bound");
        assert!(
            any_diff,
            "bf16 cache gave the f32 result: no rounding happened"
        );
    }
}
