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
                // SAFETY: `matmul` writes every column of every row; f32 panels exist only on
                // CPUs with AVX2 and FMA (`supported`).
                Ok(unsafe {
                    fully_written(m * self.out, |y| {
                        matmul::<F32Kernel>(x, m, k, w, self.out, y)
                    })
                })
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
            // SAFETY: `matmul_t` writes every column of every row (its first inner block);
            // f32 panels exist only on CPUs with AVX2 and FMA (`supported`).
            Ok(unsafe { fully_written(m * k, |dx| matmul_t::<F32Kernel>(g, m, out, w, k, dx)) })
        }),
        PanelFormat::Bf16 => crate::packed_bf16::backward(panels, g, m, out, k),
    })?;
    let mut dx_dims = dims.to_vec();
    *dx_dims.last_mut().expect("non-empty") = k;
    Tensor::from_vec(dx, dx_dims, g.device())
}

/// How [`grad_input`] splits `dx[m, k] = g[m, n] @ W[n, k]` into cache-sized work, shared by
/// the f32 and bf16 paths.
///
/// Each parallel task ([`TransposePlan::tasks`]) owns a block of rows and a range of 16-column
/// blocks of `dx` (one range per thread, so each panel tile is transposed once per row block).
/// It walks the inner (output-feature) axis `block` features at a time: it transposes its
/// columns of those `block` panel rows of `W` (reading each panel's part front to back, so the
/// hardware prefetcher keeps up) into a scratch buffer in the forward kernel's operand layout
/// (about 256 KiB, in L2 beside the `[rows, block]` slice of `g`), then multiplies its rows by
/// each of its column blocks, adding to `dx` after the first inner block. So `W` is read from
/// memory once per row block and `g` once per column range, and the transposes cost `n * k`
/// moves per row block against `m * n * k` multiply-adds.
struct TransposePlan {
    /// Output features per inner block: a multiple of [`PANEL`] (and so of 2, whole bf16 pairs).
    block: usize,
    /// Rows of `g` per task.
    rows: usize,
    /// 16-column blocks of `dx` per task.
    col_blocks: usize,
}

impl TransposePlan {
    /// Scratch bytes the inner block aims for.
    const SCRATCH_BYTES: usize = 256 * 1024;
    /// Bytes of `g` per task and inner block, at most.
    const G_BYTES: usize = 384 * 1024;
    /// Most rows per task: more rows mean fewer transposes of `W`, but shorter inner blocks
    /// (more reloads of the accumulators).
    const MAX_ROWS: usize = 512;

    /// The plan for `g: [m, n]` and `W: [n, k]`, with `g_bytes` bytes per element of `g` and
    /// `w_bytes` per element of `W` as the kernel reads them.
    fn new(m: usize, n: usize, k: usize, g_bytes: usize, w_bytes: usize) -> Self {
        let threads = rayon::current_num_threads().max(1);
        let all_cols = k.div_ceil(PANEL);
        let col_blocks = all_cols.div_ceil(threads.min(all_cols).max(1)).max(1);
        let rows = m.div_ceil(m.div_ceil(Self::MAX_ROWS).max(1)).max(1);
        let block = (Self::SCRATCH_BYTES / (w_bytes * col_blocks * PANEL))
            .min(Self::G_BYTES / (g_bytes * rows))
            .next_multiple_of(PANEL)
            .max(2 * PANEL)
            .min(n.next_multiple_of(PANEL));
        TransposePlan {
            block,
            rows,
            col_blocks,
        }
    }

    /// `(first row, rows, first column block, column blocks)` of each task, for `g: [m, ..]`
    /// and `dx: [m, k]`.
    fn tasks(
        &self,
        m: usize,
        k: usize,
    ) -> impl IndexedParallelIterator<Item = (usize, usize, usize, usize)> {
        let (rows, cbs, all_cols) = (self.rows, self.col_blocks, k.div_ceil(PANEL));
        let col_tasks = all_cols.div_ceil(cbs);
        (0..m.div_ceil(rows) * col_tasks)
            .into_par_iter()
            .map(move |t| {
                let (r, c) = (t / col_tasks, t % col_tasks);
                (
                    r * rows,
                    rows.min(m - r * rows),
                    c * cbs,
                    cbs.min(all_cols - c * cbs),
                )
            })
    }
}

/// `dx[m, k] = g[m, n] @ W[n, k]` with `W` in `K`'s panels, blocked as [`TransposePlan`] says:
/// for each inner block a task transposes tiles of the panels ([`Microkernel::transpose_tile`])
/// into the forward kernel's operand layout and runs its rows against each 16-column block of it.
/// `g` is `[m, ceil(n / K::FEATURES)]` in `K::X` units.
///
/// f32 panel `p` holds `W[p*16 + j, c]` at `c*16 + j`, so the 16 x 16 tile of panel `p` and input
/// features `c0..c0+16` is contiguous, and its transpose is the `[16, 16]` piece of the forward
/// kernel's operand for `dx[.., c0..c0+16]` with `g` as input (bf16 pairs: see
/// [`crate::packed_bf16`]). Float order: each `dx[r, c]` sums `g[r, o] * W[o, c]` in ascending
/// `o` (the kernel's accumulators are stored and reloaded between inner blocks), as the naive
/// loop does in f32 with FMA.
///
/// # Safety
/// The CPU must have `K`'s instruction set (checked before any weight is packed), and `out`
/// must be valid for `m * k` values.
pub(crate) unsafe fn matmul_t<K: Microkernel>(
    g: &[K::X],
    m: usize,
    n: usize,
    w: &[K::W],
    k: usize,
    out: Out,
) {
    let f = K::FEATURES;
    let (k_units, n_units, line) = (k.div_ceil(f), n.div_ceil(f), f * PANEL);
    // Input units per 16-column block.
    let block_units = PANEL / f;
    let plan = TransposePlan::new(
        m,
        n,
        k,
        std::mem::size_of::<K::X>() / f,
        std::mem::size_of::<K::W>(),
    );
    plan.tasks(m, k).for_each(|(r0, rows, cb0, cbs)| {
        // `W[start.., ..]` as `[column block][output unit][16 input features x FEATURES]`.
        let mut scratch = vec![K::W_ZERO; cbs * plan.block / f * line];
        // `block` is a multiple of `PANEL`, so every block starts on a whole unit.
        for start in (0..n).step_by(plan.block) {
            let len = plan.block.min(n - start);
            for p in start / PANEL..(start + len).div_ceil(PANEL) {
                for cb in 0..cbs {
                    let i0 = (cb0 + cb) * block_units;
                    let lines = block_units.min(k_units - i0);
                    let src = &w[(p * k_units + i0) * line..][..lines * line];
                    let dst = &mut scratch[(cb * plan.block + p * PANEL - start) / f * line..]
                        [..block_units * line];
                    K::transpose_tile(src, lines, dst);
                }
            }
            for cb in 0..cbs {
                let c0 = (cb0 + cb) * PANEL;
                // SAFETY: the task writes only its own rows and column blocks of `dx`, and the
                // column block's scratch holds `len` lines; the caller vouches for the CPU.
                unsafe {
                    panel_product::<K>(
                        &g[r0 * n_units + start / f..],
                        rows,
                        (len.div_ceil(f), n_units),
                        &scratch[cb * plan.block / f * line..],
                        out.at(r0 * k + c0),
                        k,
                        PANEL.min(k - c0),
                        start > 0,
                    )
                };
            }
        }
    });
}

/// `dst[j * 16 + c] = src[c * 16 + j]` for a 16 x 16 tile of which only the first `lines` rows
/// of `src` exist (a partial last column block); the other columns of `dst` get zeros.
fn transpose_tile(src: &[f32], lines: usize, dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if lines == PANEL {
        // SAFETY: the f32 panels are only built on CPUs with AVX2 (`supported`); both tiles hold
        // 256 values.
        unsafe {
            for (si, di) in [(0, 0), (8, 128), (128, 8), (136, 136)] {
                transpose_8x8(src.as_ptr().add(si), dst.as_mut_ptr().add(di));
            }
        }
        return;
    }
    for (j, line) in dst.chunks_exact_mut(PANEL).enumerate() {
        for (c, v) in line.iter_mut().enumerate() {
            *v = if c < lines { src[c * PANEL + j] } else { 0.0 };
        }
    }
}

/// Transposes the 8 x 8 block at `src` (row stride [`PANEL`]) into `dst` (row stride
/// [`PANEL`]) with AVX2 shuffles.
///
/// # Safety
/// Both must be valid for 8 rows of 8 values at stride 16; the CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_8x8(src: *const f32, dst: *mut f32) {
    use std::arch::x86_64::*;
    let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * PANEL)));
    // Interleave pairs of rows, then pairs of pairs, then swap 128-bit halves.
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    let rows = [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ];
    for (i, v) in rows.into_iter().enumerate() {
        _mm256_storeu_ps(dst.add(i * PANEL), v);
    }
}

/// A `[len]` buffer that `write` fills through the pointer it is given, without zeroing it first:
/// the products overwrite their outputs, and zeroing the LM head's 50 MB of logits (and every
/// other product's output) was a visible share of an update.
///
/// # Safety
/// `write` must write each of the `len` values before it reads it, and all of them.
pub(crate) unsafe fn fully_written(len: usize, write: impl FnOnce(Out)) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    write(Out(v.as_mut_ptr()));
    v.set_len(len);
    v
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

/// `y[m, n] = x @ W^T` for `x: [m, k_units]` in `K::X` units and `W` in `K`'s panels; panels
/// run in parallel.
///
/// # Safety
/// The CPU must have `K`'s instruction set (checked before any weight is packed), and `out`
/// must be valid for `m * n` values.
pub(crate) unsafe fn matmul<K: Microkernel>(
    x: &[K::X],
    m: usize,
    k_units: usize,
    w: &[K::W],
    n: usize,
    out: Out,
) {
    // About 2 MFLOP per task keeps rayon's overhead small against the work.
    let per_task = (2_000_000 / (2 * K::FEATURES * m * k_units * PANEL).max(1)).max(1);
    let line = K::FEATURES * PANEL;
    (0..n.div_ceil(PANEL))
        .into_par_iter()
        .with_min_len(per_task)
        .for_each(|p| {
            let panel = &w[p * k_units * line..(p + 1) * k_units * line];
            let cols = PANEL.min(n - p * PANEL);
            // SAFETY: panel `p` writes only columns p*PANEL..p*PANEL+cols of each row; the
            // caller vouches for the CPU.
            unsafe {
                panel_product::<K>(
                    x,
                    m,
                    (k_units, k_units),
                    panel,
                    out.at(p * PANEL),
                    n,
                    cols,
                    false,
                )
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
    type X: Copy + Sync;
    /// One element of a panel.
    type W: Copy + Send + Sync;
    /// Input rows per kernel call.
    const ROWS: usize;
    /// Input features per `X` (1, or 2 for a bf16 pair): a panel line holds `FEATURES * PANEL`
    /// values of `W`.
    const FEATURES: usize;
    /// The zero of `W`, for the backward's scratch.
    const W_ZERO: Self::W;

    /// One 16 x 16 tile of `W` from the panel layout to the forward kernel's operand layout,
    /// for the backward ([`matmul_t`]): `src` holds `lines` panel lines (input units) of one
    /// panel; `dst` gets `PANEL / FEATURES` lines with the output features as the inner axis,
    /// and zeros for missing input features.
    fn transpose_tile(src: &[Self::W], lines: usize, dst: &mut [Self::W]);

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
    const FEATURES: usize = 1;
    const W_ZERO: f32 = 0.0;

    fn transpose_tile(src: &[f32], lines: usize, dst: &mut [f32]) {
        transpose_tile(src, lines, dst)
    }

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

    /// The backward straight from the panels against a naive loop that sums `g[r, o] * W[o, c]`
    /// in ascending `o` with one fused multiply-add at a time: the float order `matmul_t`
    /// documents, so the results are bit-equal. Shapes with a partial last panel and column
    /// block, partial row blocks, several inner blocks and several row tasks.
    #[test]
    fn grad_input_matches_naive_fma_loop_exactly() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        for (m, k, n) in [
            (13, 37, 45),
            (70, 131, 16),
            (3, 5, 200),
            (33, 64, 96),
            (5, 37, 4101),
            (3, 1000, 300),
            (400, 40, 100),
        ] {
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
                    let want =
                        (0..n).fold(0f32, |acc, o| gv[r * n + o].mul_add(wv[o * k + c], acc));
                    assert_eq!(got[r * k + c], want, "({m},{k},{n}) [{r}, {c}]");
                }
            }
        }
        Ok(())
    }
}
