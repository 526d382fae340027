//! Frozen f32 weights pre-packed for the CPU matmul `x @ W^T`.
//!
//! A general GEMM re-packs its weight operand on every call. In decoding every call
//! is a new, short product (a few hundred rows against a whole weight), so that
//! repacking plus the weight's trip from memory was a large share of the time, worst
//! for the 49k-row LM head. Packed once at load, each block of [`PANEL`] output
//! features is one contiguous `[in, PANEL]` panel that a register-blocked kernel
//! streams while it sweeps all input rows, so the weight is read from memory once
//! per call. (Measured single-threaded on the decode shapes: 1.2–2x the candle
//! matmul, ~1.8x on the LM head.)

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu_data::{input_slice, with_f32};

/// Output features per panel: two 8-lane f32 vectors.
pub(crate) const PANEL: usize = 16;
/// Input rows per kernel call: 6 x 2 accumulators fill 12 of the 16 AVX2 registers.
const ROWS: usize = 6;
/// The most rows any [`Microkernel`] takes per call (sizes the partial-panel buffer).
pub(crate) const MAX_ROWS: usize = 8;

/// Whether weights of this dtype on this device are packed: f32 on an x86 CPU
/// with AVX2 and FMA (the kernel's instruction set); anything else keeps candle's
/// matmul.
pub(crate) fn supported(w: &Tensor) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        w.dtype() == DType::F32
            && w.device().is_cpu()
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = w;
        false
    }
}

/// Packs `w: [out, in]` into `[ceil(out / PANEL), in, PANEL]`, zero-padding the last panel.
pub(crate) fn pack(w: &Tensor) -> candle_core::Result<Tensor> {
    let (out, inp) = w.dims2()?;
    let pad = out.next_multiple_of(PANEL) - out;
    let w = w.pad_with_zeros(0, 0, pad)?;
    w.reshape((out.div_ceil(PANEL), PANEL, inp))?
        .transpose(1, 2)?
        .contiguous()
}

/// The dense `[out, in]` weight of `panels` (a copy), for merging adapters and export.
///
/// A parallel transpose that reads every panel row (one cache line) once (the backward
/// pass reads the panels in place instead, see [`grad_input`]).
pub(crate) fn unpack(panels: &Tensor, out: usize) -> candle_core::Result<Tensor> {
    let (n_panels, inp, _) = panels.dims3()?;
    let mut w = vec![0f32; n_panels * PANEL * inp];
    with_f32(panels, |src| {
        w.par_chunks_mut(PANEL * inp)
            .zip(src.par_chunks(inp * PANEL))
            .for_each(|(rows, panel)| {
                for (k, line) in panel.chunks_exact(PANEL).enumerate() {
                    for (j, &v) in line.iter().enumerate() {
                        rows[j * inp + k] = v;
                    }
                }
            });
        Ok(())
    })?;
    w.truncate(out * inp);
    Tensor::from_vec(w, (out, inp), panels.device())
}

/// How a packed weight's panels store it: f32 ([`pack`]) or bf16 pairs for the AVX512-BF16
/// kernel ([`crate::packed_bf16::pack`]). One op and one backward serve both; only the
/// products differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PanelFormat {
    /// `[ceil(out / 16), in, 16]` f32 panels (AVX2 + FMA kernel).
    F32,
    /// `[ceil(out / 16), ceil(in / 2), 32]` bf16 panels (AVX512-BF16 kernel).
    Bf16,
}

/// `x @ W^T` for a packed frozen `W: [out, inp]`; records a backward pass for `x` only, like
/// [`crate::frozen::FrozenMatmul`].
pub(crate) struct PackedMatmul {
    pub panels: Tensor,
    pub out: usize,
    pub inp: usize,
    pub format: PanelFormat,
}

impl CustomOp1 for PackedMatmul {
    fn name(&self) -> &'static str {
        match self.format {
            PanelFormat::F32 => "packed-matmul",
            PanelFormat::Bf16 => "packed-bf16-matmul",
        }
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let k = self.inp;
        let dims = layout.dims();
        if dims.last() != Some(&k) || !layout.is_contiguous() {
            candle_core::bail!(
                "{}: input must be contiguous [.., {k}], got {dims:?}",
                self.name()
            );
        }
        let m = layout.shape().elem_count() / k;
        let x = input_slice(storage, layout)?;
        let y = match self.format {
            PanelFormat::F32 => with_f32(&self.panels, |w| {
                let mut y = vec![0f32; m * self.out];
                matmul(x, m, k, w, self.out, &mut y);
                Ok(y)
            })?,
            PanelFormat::Bf16 => crate::packed_bf16::forward(&self.panels, x, m, k, self.out)?,
        };
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("non-empty") = self.out;
        Ok((CpuStorage::F32(y), Shape::from(out_dims)))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        grad_input(&self.panels, self.format, self.out, self.inp, grad_res).map(Some)
    }
}

/// `g @ W` for `g: [.., out]` and a packed `W: [out, k]`: the gradient of `x @ W^T` with
/// respect to `x`.
///
/// It reads the panels in place ([`matmul_t`], [`crate::packed_bf16::backward`]): unpacking
/// them on every backward call was ~10% of a LoRA update, and for the 49k-row LM head it also
/// allocated a 113 MB copy per micro-batch.
pub(crate) fn grad_input(
    panels: &Tensor,
    format: PanelFormat,
    out: usize,
    k: usize,
    g: &Tensor,
) -> candle_core::Result<Tensor> {
    let g = g.contiguous()?;
    let dims = g.dims();
    if dims.last() != Some(&out) {
        candle_core::bail!("packed matmul backward: gradient must be [.., {out}], got {dims:?}");
    }
    let m = g.elem_count() / out;
    let dx = with_f32(&g, |g| match format {
        PanelFormat::F32 => with_f32(panels, |w| {
            let mut dx = vec![0f32; m * k];
            matmul_t(g, m, out, w, k, &mut dx);
            Ok(dx)
        }),
        PanelFormat::Bf16 => crate::packed_bf16::backward(panels, g, m, out, k),
    })?;
    let mut dx_dims = dims.to_vec();
    *dx_dims.last_mut().expect("non-empty") = k;
    Tensor::from_vec(dx, dx_dims, g.device())
}

/// Input features per task of [`matmul_t`] (one panel's width of `dx`), and output features
/// per transposed block: 2048 x 16 f32 = 128 KiB stays in L2 while the rows sweep it.
pub(crate) const T_BLOCK: usize = 2048;

/// `dx[m, k] = g[m, n] @ W[n, k]` with `W` packed (`[ceil(n / PANEL), k, PANEL]`).
///
/// Panel `p` holds `W[p*16 + j, c]` at `c*16 + j`. For 16 input features `c0..c0+16` the
/// `[n, 16]` block `W[.., c0..c0+16]` is a transpose of 16 x 16 tiles of the panels; copied
/// into a scratch buffer (n x 16 values against m x n x 16 multiply-adds), it is exactly the
/// operand of the forward kernel, which then computes `dx[.., c0..c0+16]` with `g` as input.
fn matmul_t(g: &[f32], m: usize, n: usize, w: &[f32], k: usize, dx: &mut [f32]) {
    let out = Out(dx.as_mut_ptr());
    let col_blocks = k.div_ceil(PANEL);
    (0..col_blocks).into_par_iter().for_each(|cb| {
        let cols = PANEL.min(k - cb * PANEL);
        let mut scratch = vec![0f32; T_BLOCK.min(n) * PANEL];
        for start in (0..n).step_by(T_BLOCK) {
            let len = T_BLOCK.min(n - start);
            for (o, line) in scratch.chunks_exact_mut(PANEL).take(len).enumerate() {
                let o = start + o;
                let (p, j) = (o / PANEL, o % PANEL);
                let tile = &w[(p * k + cb * PANEL) * PANEL..];
                for (c, v) in line.iter_mut().take(cols).enumerate() {
                    *v = tile[c * PANEL + j];
                }
            }
            // SAFETY: task `cb` writes only columns cb*PANEL..cb*PANEL+cols of each row.
            unsafe {
                panel_product::<F32Kernel>(
                    &g[start..],
                    m,
                    (len, n),
                    &scratch,
                    out.at(cb * PANEL),
                    k,
                    cols,
                    start > 0,
                )
            };
        }
    });
}

/// A raw output pointer shared by the panel workers, which write disjoint columns.
#[derive(Clone, Copy)]
pub(crate) struct Out(pub(crate) *mut f32);
// SAFETY: `Out` is only a base address; every worker that receives it writes a column range no
// other worker writes (see each `panel_product` call), and the caller keeps the buffer alive and
// unread until the parallel loop has joined.
unsafe impl Send for Out {}
// SAFETY: as for `Send`: shared references only hand out the address, never a shared write.
unsafe impl Sync for Out {}

impl Out {
    /// The pointer `offset` elements in (a method, so closures capture the whole `Out`).
    pub(crate) fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// `y[m, n] = x[m, k] @ W^T` with `W` packed; panels run in parallel.
fn matmul(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, y: &mut [f32]) {
    let out = Out(y.as_mut_ptr());
    // About 2 MFLOP per task keeps rayon's overhead small against the work.
    let per_task = (2_000_000 / (2 * m * k * PANEL).max(1)).max(1);
    let n_panels = n.div_ceil(PANEL);
    (0..n_panels)
        .into_par_iter()
        .with_min_len(per_task)
        .for_each(|p| {
            let panel = &w[p * k * PANEL..(p + 1) * k * PANEL];
            let cols = PANEL.min(n - p * PANEL);
            // SAFETY: panel `p` writes only columns p*PANEL..p*PANEL+cols of each row.
            unsafe {
                panel_product::<F32Kernel>(x, m, (k, k), panel, out.at(p * PANEL), n, cols, false)
            };
        });
}

/// A register-blocked kernel for one `PANEL`-wide panel of packed weights: `y[r, 0..PANEL]
/// (+)= x[r, ..] . panel` for up to [`Microkernel::ROWS`] input rows at a time.
///
/// [`panel_product`] drives it over all rows of `x` and handles a partial last panel, so the
/// f32 (AVX2) and the bf16 (AVX512-BF16, [`crate::packed_bf16`]) paths share that code.
pub(crate) trait Microkernel {
    /// One element of the input rows as the kernel reads them (f32, or a pair of bf16).
    type X;
    /// One element of a panel.
    type W;
    /// Input rows per kernel call.
    const ROWS: usize;

    /// `rows <= ROWS` rows of `x` (stride `ldx`, inner length `k` in `X` units) against `panel`
    /// into `y` (stride `ldy`, `PANEL` columns), added to `y` when `accumulate`.
    ///
    /// # Safety
    /// `x` must hold `(rows - 1) * ldx + k` values and `panel` `k` panel lines; `y` must be
    /// valid for reads and writes of `PANEL` values at each of the `rows` rows; the CPU must
    /// have the kernel's instruction set.
    #[allow(clippy::too_many_arguments)]
    unsafe fn block(
        rows: usize,
        accumulate: bool,
        x: &[Self::X],
        k: usize,
        ldx: usize,
        panel: &[Self::W],
        y: *mut f32,
        ldy: usize,
    );
}

/// The f32 kernel: AVX2 + FMA, `ROWS` x 2 accumulators of 8 lanes.
pub(crate) struct F32Kernel;

impl Microkernel for F32Kernel {
    type X = f32;
    type W = f32;
    const ROWS: usize = ROWS;

    unsafe fn block(
        rows: usize,
        accumulate: bool,
        x: &[f32],
        k: usize,
        ldx: usize,
        panel: &[f32],
        y: *mut f32,
        ldy: usize,
    ) {
        match (rows, accumulate) {
            (6, false) => kernel::<6, false>(x, k, ldx, panel, y, ldy),
            (5, false) => kernel::<5, false>(x, k, ldx, panel, y, ldy),
            (4, false) => kernel::<4, false>(x, k, ldx, panel, y, ldy),
            (3, false) => kernel::<3, false>(x, k, ldx, panel, y, ldy),
            (2, false) => kernel::<2, false>(x, k, ldx, panel, y, ldy),
            (_, false) => kernel::<1, false>(x, k, ldx, panel, y, ldy),
            (6, true) => kernel::<6, true>(x, k, ldx, panel, y, ldy),
            (5, true) => kernel::<5, true>(x, k, ldx, panel, y, ldy),
            (4, true) => kernel::<4, true>(x, k, ldx, panel, y, ldy),
            (3, true) => kernel::<3, true>(x, k, ldx, panel, y, ldy),
            (2, true) => kernel::<2, true>(x, k, ldx, panel, y, ldy),
            (_, true) => kernel::<1, true>(x, k, ldx, panel, y, ldy),
        }
    }
}

/// One panel's `[m, cols]` block of the output, `K::ROWS` input rows at a time; `(k, ldx)` are
/// the inner length and the row stride of `x` (in `K::X` units). With `accumulate` the block
/// is added to `y`.
///
/// # Safety
/// `y` must be valid for `m` rows of stride `ldy` and `cols <= PANEL` columns, `x` and
/// `panel` must hold what [`Microkernel::block`] reads, and the CPU must support the
/// kernel's instruction set (checked before packing).
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn panel_product<K: Microkernel>(
    x: &[K::X],
    m: usize,
    (k, ldx): (usize, usize),
    panel: &[K::W],
    y: *mut f32,
    ldy: usize,
    cols: usize,
    accumulate: bool,
) {
    let mut tmp = [0f32; MAX_ROWS * PANEL];
    let mut i = 0;
    while i < m {
        let rows = K::ROWS.min(m - i);
        let xi = &x[i * ldx..];
        let (dst, ld) = match cols == PANEL {
            true => (y.add(i * ldy), ldy),
            false => (tmp.as_mut_ptr(), PANEL),
        };
        if accumulate && cols < PANEL {
            for r in 0..rows {
                std::ptr::copy_nonoverlapping(
                    y.add((i + r) * ldy),
                    tmp.as_mut_ptr().add(r * PANEL),
                    cols,
                );
            }
        }
        K::block(rows, accumulate, xi, k, ldx, panel, dst, ld);
        if cols < PANEL {
            for r in 0..rows {
                std::ptr::copy_nonoverlapping(
                    tmp.as_ptr().add(r * PANEL),
                    y.add((i + r) * ldy),
                    cols,
                );
            }
        }
        i += rows;
    }
}

/// `y[r, 0..PANEL] (+)= x[r, 0..k] . panel` for `R` rows of stride `ldx`, accumulating in
/// registers (starting from `y` when `ACC`).
///
/// # Safety
/// `x` must hold `(R - 1) * ldx + k` values and `panel` `k * PANEL`; `y` must be valid for
/// reads and writes of `PANEL` values at each of the `R` rows of stride `ldy`; the CPU must
/// support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel<const R: usize, const ACC: bool>(
    x: &[f32],
    k: usize,
    ldx: usize,
    panel: &[f32],
    y: *mut f32,
    ldy: usize,
) {
    use std::arch::x86_64::*;
    debug_assert!(x.len() >= (R - 1) * ldx + k && panel.len() >= k * PANEL);
    let (x, panel) = (x.as_ptr(), panel.as_ptr());
    let mut lo = [_mm256_setzero_ps(); R];
    let mut hi = [_mm256_setzero_ps(); R];
    if ACC {
        for r in 0..R {
            lo[r] = _mm256_loadu_ps(y.add(r * ldy));
            hi[r] = _mm256_loadu_ps(y.add(r * ldy + 8));
        }
    }
    for kk in 0..k {
        let b0 = _mm256_loadu_ps(panel.add(kk * PANEL));
        let b1 = _mm256_loadu_ps(panel.add(kk * PANEL + 8));
        for r in 0..R {
            let a = _mm256_broadcast_ss(&*x.add(r * ldx + kk));
            lo[r] = _mm256_fmadd_ps(a, b0, lo[r]);
            hi[r] = _mm256_fmadd_ps(a, b1, hi[r]);
        }
    }
    for r in 0..R {
        _mm256_storeu_ps(y.add(r * ldy), lo[r]);
        _mm256_storeu_ps(y.add(r * ldy + 8), hi[r]);
    }
}

/// Never called: [`supported`] is false off x86-64, so no weight gets packed.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn kernel<const R: usize, const ACC: bool>(
    _: &[f32],
    _: usize,
    _: usize,
    _: &[f32],
    _: *mut f32,
    _: usize,
) {
    unreachable!("packed weights need x86-64")
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn packed_matmul_matches_candle_and_unpacks() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        // Odd sizes: a partial last panel and a partial row block.
        let (m, k, n) = (13, 37, 45);
        let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
        if !supported(&w) {
            return Ok(());
        }
        let panels = pack(&w)?;
        let y = x.apply_op1(PackedMatmul {
            panels: panels.clone(),
            out: n,
            inp: k,
            format: PanelFormat::F32,
        })?;
        let want = x.matmul(&w.t()?)?;
        let diff = (y - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-4, "max diff {diff}");
        let back = (unpack(&panels, n)? - &w)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert_eq!(back, 0.0);
        Ok(())
    }

    /// The backward straight from the panels against a naive triple loop, on shapes with a
    /// partial last panel, partial 4 x 4 blocks and several parallel tasks.
    #[test]
    fn grad_input_matches_naive_product() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        for (m, k, n) in [(13, 37, 45), (70, 131, 16), (3, 5, 200), (33, 64, 96)] {
            let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
            if !supported(&w) {
                return Ok(());
            }
            let g = Tensor::randn(0f32, 1.0, (m, n), &dev)?;
            let got = grad_input(&pack(&w)?, PanelFormat::F32, n, k, &g.reshape((1, m, n))?)?;
            assert_eq!(got.dims(), &[1, m, k]);
            let got = got.flatten_all()?.to_vec1::<f32>()?;
            let (gv, wv) = (
                g.flatten_all()?.to_vec1::<f32>()?,
                w.flatten_all()?.to_vec1::<f32>()?,
            );
            for r in 0..m {
                for c in 0..k {
                    let want: f64 = (0..n)
                        .map(|o| gv[r * n + o] as f64 * wv[o * k + c] as f64)
                        .sum();
                    let err = (got[r * k + c] as f64 - want).abs();
                    assert!(
                        err < 1e-4 * (1.0 + want.abs()),
                        "[{r}, {c}] {} vs {want}",
                        got[r * k + c]
                    );
                }
            }
        }
        Ok(())
    }
}
