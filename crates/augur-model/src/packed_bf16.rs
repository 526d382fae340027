//! Frozen weights packed as bf16 panels for CPUs with AVX512-BF16 (`[model] dtype = "bf16"`).
//!
//! Decoding is bound by reading the weights, so half-width weights halve that traffic, and
//! `vdpbf16ps` does 32 multiply-adds per instruction where the f32 AVX2 kernel does 8. Only the
//! frozen products run in bf16: each call rounds its input rows to bf16 (round to nearest even)
//! and accumulates in f32, so LoRA adapters, norms, softmax, the loss and the optimizer stay
//! f32. The backward pass ([`backward`]) multiplies by the same bf16 weights, so the
//! gradient is that of the function the forward computed.
//!
//! Layout: `vdpbf16ps` multiplies pairs of bf16 and adds both products into one f32 lane, so
//! a panel interleaves two input features per output feature: panel `p` of `[n_panels, ceil(k
//! / 2), 2 * PANEL]` holds `W[p * PANEL + j, 2i + h]` at `[p, i, 2j + h]`, and one 64-byte line
//! feeds the 16 lanes (output features) with one input pair. The rows of `x` become pairs the
//! same way (a bf16 row, padded to even length), each broadcast to all lanes.

use candle_core::{DType, Tensor};
use half::bf16;
use rayon::prelude::*;

use crate::cpu_data::with_f32;
use crate::packed::{fully_written, matmul, matmul_t, Microkernel, MAX_ROWS, PANEL};

/// Whether this CPU runs the bf16 kernel (AVX512-BF16; checked at run time, so one binary
/// serves every x86-64 CPU).
pub fn cpu_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512bf16") && is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether `w` can be packed as bf16 panels: f32 on the CPU, and a CPU with AVX512-BF16.
pub(crate) fn supported(w: &Tensor) -> bool {
    w.dtype() == DType::F32 && w.device().is_cpu() && cpu_supported()
}

/// Packs `w: [out, in]` (f32) into bf16 panels `[ceil(out / PANEL), ceil(in / 2), 2 * PANEL]`,
/// zero-padding the last panel and an odd last input feature.
pub(crate) fn pack(w: &Tensor) -> candle_core::Result<Tensor> {
    let (out, k) = w.dims2()?;
    let (n_panels, k2) = (out.div_ceil(PANEL), k.div_ceil(2));
    let mut panels = vec![bf16::ZERO; n_panels * k2 * 2 * PANEL];
    with_f32(w, |w| {
        panels
            .par_chunks_mut(k2 * 2 * PANEL)
            .enumerate()
            .for_each(|(p, panel)| {
                for j in 0..PANEL.min(out - p * PANEL) {
                    let row = &w[(p * PANEL + j) * k..(p * PANEL + j + 1) * k];
                    for (c, &v) in row.iter().enumerate() {
                        panel[(c / 2) * 2 * PANEL + 2 * j + c % 2] = bf16::from_f32(v);
                    }
                }
            });
        Ok(())
    })?;
    Tensor::from_vec(panels, (n_panels, k2, 2 * PANEL), w.device())
}

/// The dense f32 `[out, in]` weight of bf16 `panels` (exactly the bf16 values, widened), for
/// merging adapters and export.
pub(crate) fn unpack(panels: &Tensor, out: usize, k: usize) -> candle_core::Result<Tensor> {
    let (n_panels, k2, _) = panels.dims3()?;
    let mut w = vec![0f32; n_panels * PANEL * k];
    with_bf16(panels, |src| {
        w.par_chunks_mut(PANEL * k)
            .zip(src.par_chunks(k2 * 2 * PANEL))
            .for_each(|(rows, panel)| {
                for (j, row) in rows.chunks_exact_mut(k).enumerate() {
                    for (c, v) in row.iter_mut().enumerate() {
                        *v = panel[(c / 2) * 2 * PANEL + 2 * j + c % 2].to_f32();
                    }
                }
            });
        Ok(())
    })?;
    w.truncate(out * k);
    Tensor::from_vec(w, (out, k), panels.device())
}

/// `x @ W^T` for `x: [m, k]` and bf16 panels (from [`pack`]) of `W: [n, k]`, with `x` rounded
/// to bf16 and f32 accumulation: the forward of [`crate::packed::PackedMatmul`] for
/// [`PanelFormat::Bf16`](crate::packed::PanelFormat).
pub(crate) fn forward(
    panels: &Tensor,
    x: &[f32],
    m: usize,
    k: usize,
    n: usize,
) -> candle_core::Result<Vec<f32>> {
    let x = to_bf16_pairs(x, m, k);
    with_bf16(panels, |w| {
        // SAFETY: `matmul` writes every column of every row; bf16 panels exist only on CPUs
        // with AVX512-BF16 (`supported`).
        Ok(unsafe {
            fully_written(m * n, |y| {
                matmul::<Bf16Kernel>(&x, m, k.div_ceil(2), w, n, y)
            })
        })
    })
}

/// `g @ W` for `g: [m, n]` and bf16 panels of `W: [n, k]`: the gradient of [`forward`] with
/// respect to `x`, with `g` rounded to bf16 and f32 accumulation like the forward.
///
/// As in the f32 path, the panels are read in place: tiles of them are transposed into a small
/// scratch operand for the forward kernel (see [`matmul_t`]).
pub(crate) fn backward(
    panels: &Tensor,
    g: &[f32],
    m: usize,
    n: usize,
    k: usize,
) -> candle_core::Result<Vec<f32>> {
    let g = to_bf16_pairs(g, m, n);
    with_bf16(panels, |w| {
        // SAFETY: `matmul_t` writes every column of every row (its first inner block); bf16
        // panels exist only on CPUs with AVX512-BF16 (`supported`).
        Ok(unsafe { fully_written(m * k, |dx| matmul_t::<Bf16Kernel>(&g, m, n, w, k, dx)) })
    })
}

/// Rounds `x: [m, k]` to bf16 pairs `[m, ceil(k / 2)]` (the low half is the even feature), the
/// operand layout of [`Bf16Kernel`].
fn to_bf16_pairs(x: &[f32], m: usize, k: usize) -> Vec<u32> {
    let k2 = k.div_ceil(2);
    let mut pairs = vec![0u32; m * k2];
    let bits = |v: f32| u32::from(bf16::from_f32(v).to_bits());
    pairs
        .par_chunks_mut(k2)
        .zip(x.par_chunks(k))
        .with_min_len(16)
        .for_each(|(dst, row)| {
            for (d, two) in dst.iter_mut().zip(row.chunks(2)) {
                *d = bits(two[0]) | two.get(1).map_or(0, |&hi| bits(hi) << 16);
            }
        });
    pairs
}

/// One 16 x 16 tile from the panel layout to the forward kernel's operand layout: `src` holds
/// `lines` (of 8) input pairs `i` as `[i][2j + h] = W[j, 2i + h]`, `dst` gets the output pairs
/// `[j / 2][2c + j % 2] = W[j, c]` (zeros for the missing input features).
///
/// In 64-bit units (2 x 2 blocks of `W`) that is an 8 x 8 transpose, with the middle two bf16
/// of each unit swapped: `(W[2a, 2b], W[2a, 2b+1], W[2a+1, 2b], W[2a+1, 2b+1])` becomes
/// `(W[2a, 2b], W[2a+1, 2b], W[2a, 2b+1], W[2a+1, 2b+1])`.
fn transpose_tile(src: &[bf16], lines: usize, dst: &mut [bf16]) {
    debug_assert!(src.len() >= lines * 2 * PANEL && dst.len() >= PANEL * PANEL);
    let units = |t: &[bf16], at: usize| -> u64 {
        (0..4).fold(0, |u, e| u | u64::from(t[at + e].to_bits()) << (16 * e))
    };
    for a in 0..PANEL / 2 {
        for b in 0..PANEL / 2 {
            let v = match b < lines {
                true => units(src, b * 2 * PANEL + 4 * a),
                false => 0,
            };
            let v = (v & 0xFFFF_0000_0000_FFFF)
                | ((v & 0x0000_0000_FFFF_0000) << 16)
                | ((v & 0x0000_FFFF_0000_0000) >> 16);
            for e in 0..4 {
                dst[a * 2 * PANEL + 4 * b + e] = bf16::from_bits((v >> (16 * e)) as u16);
            }
        }
    }
}

/// Runs `f` on the contiguous bf16 data of a CPU tensor.
fn with_bf16<R>(
    t: &Tensor,
    f: impl FnOnce(&[bf16]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("bf16 kernel: tensor is not on the CPU");
    };
    let start = layout.start_offset();
    f(&cpu.as_slice::<bf16>()?[start..start + layout.shape().elem_count()])
}

/// The bf16 kernel: AVX512-BF16, one 16-lane f32 accumulator per row, 8 rows per call.
struct Bf16Kernel;

impl Microkernel for Bf16Kernel {
    type X = u32;
    type W = bf16;
    const ROWS: usize = MAX_ROWS;
    const FEATURES: usize = 2;
    const W_ZERO: bf16 = bf16::ZERO;

    fn transpose_tile(src: &[bf16], lines: usize, dst: &mut [bf16]) {
        transpose_tile(src, lines, dst)
    }

    unsafe fn block(
        rows: usize,
        accumulate: bool,
        x: &[u32],
        k: usize,
        ldx: usize,
        panel: &[bf16],
        y: *mut f32,
        ldy: usize,
    ) {
        match (rows, accumulate) {
            (8, false) => kernel::<8, false>(x, k, ldx, panel, y, ldy),
            (7, false) => kernel::<7, false>(x, k, ldx, panel, y, ldy),
            (6, false) => kernel::<6, false>(x, k, ldx, panel, y, ldy),
            (5, false) => kernel::<5, false>(x, k, ldx, panel, y, ldy),
            (4, false) => kernel::<4, false>(x, k, ldx, panel, y, ldy),
            (3, false) => kernel::<3, false>(x, k, ldx, panel, y, ldy),
            (2, false) => kernel::<2, false>(x, k, ldx, panel, y, ldy),
            (_, false) => kernel::<1, false>(x, k, ldx, panel, y, ldy),
            (8, true) => kernel::<8, true>(x, k, ldx, panel, y, ldy),
            (7, true) => kernel::<7, true>(x, k, ldx, panel, y, ldy),
            (6, true) => kernel::<6, true>(x, k, ldx, panel, y, ldy),
            (5, true) => kernel::<5, true>(x, k, ldx, panel, y, ldy),
            (4, true) => kernel::<4, true>(x, k, ldx, panel, y, ldy),
            (3, true) => kernel::<3, true>(x, k, ldx, panel, y, ldy),
            (2, true) => kernel::<2, true>(x, k, ldx, panel, y, ldy),
            (_, true) => kernel::<1, true>(x, k, ldx, panel, y, ldy),
        }
    }
}

/// `y[r, 0..PANEL] (+)= sum_i x[r, i] . panel[i]` over `k` pairs for `R` rows of stride `ldx`:
/// one panel line (16 features x one input pair) is loaded once per pair and multiplied into
/// every row's accumulator.
///
/// # Safety
/// `x` must hold `(R - 1) * ldx + k` pairs and `panel` `k` lines of `2 * PANEL`; `y` must be
/// valid for reads and writes of `PANEL` values at each of the `R` rows of stride `ldy`; the
/// CPU must support AVX512F and AVX512-BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bf16,avx512f")]
unsafe fn kernel<const R: usize, const ACC: bool>(
    x: &[u32],
    k: usize,
    ldx: usize,
    panel: &[bf16],
    y: *mut f32,
    ldy: usize,
) {
    use std::arch::x86_64::*;
    debug_assert!(x.len() >= (R - 1) * ldx + k && panel.len() >= k * 2 * PANEL);
    let (x, panel) = (x.as_ptr(), panel.as_ptr());
    let mut acc = [_mm512_setzero_ps(); R];
    if ACC {
        for (r, a) in acc.iter_mut().enumerate() {
            *a = _mm512_loadu_ps(y.add(r * ldy));
        }
    }
    for i in 0..k {
        // 32 bf16 = 64 bytes, reinterpreted as the 32-lane bf16 vector type.
        let b: __m512bh = std::mem::transmute(_mm512_loadu_ps(panel.add(i * 2 * PANEL).cast()));
        for (r, a) in acc.iter_mut().enumerate() {
            let pair: __m512bh = std::mem::transmute(_mm512_set1_epi32(*x.add(r * ldx + i) as i32));
            *a = _mm512_dpbf16_ps(*a, pair, b);
        }
    }
    for (r, a) in acc.iter().enumerate() {
        _mm512_storeu_ps(y.add(r * ldy), *a);
    }
}

/// Never called: [`cpu_supported`] is false off x86-64, so no weight gets packed as bf16.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn kernel<const R: usize, const ACC: bool>(
    _: &[u32],
    _: usize,
    _: usize,
    _: &[bf16],
    _: *mut f32,
    _: usize,
) {
    unreachable!("bf16 panels need x86-64 with AVX512-BF16")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packed::{grad_input, PackedMatmul, PanelFormat};
    use candle_core::Device;

    /// `v` rounded to bf16 and back, the values the kernel multiplies.
    fn rounded(v: &[f32]) -> Vec<f64> {
        v.iter().map(|&x| bf16::from_f32(x).to_f64()).collect()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    /// Shapes with a partial last panel, an odd inner length (a zero-padded last pair), partial
    /// row blocks and several parallel tasks.
    const SHAPES: [(usize, usize, usize); 5] = [
        (13, 37, 45),
        (70, 131, 16),
        (3, 5, 200),
        (33, 64, 96),
        (9, 576, 2100),
    ];

    /// The forward against a naive f64 product of the same bf16-rounded inputs: only the f32
    /// accumulation order differs, so the tolerance is tight. Against the f32 product of the
    /// unrounded inputs the error is bf16's: each rounding is within 2^-9 relative, so a dot
    /// product is off by about 2^-8 * sum |x w| at worst (asserted as 1% of it).
    #[test]
    fn forward_matches_naive_bf16_product_and_f32_within_rounding() -> candle_core::Result<()> {
        if !cpu_supported() {
            eprintln!("skipped: this CPU lacks AVX512-BF16");
            return Ok(());
        }
        let dev = Device::Cpu;
        for (m, k, n) in SHAPES {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
            let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
            let y = x.apply_op1(PackedMatmul {
                panels: pack(&w)?,
                out: n,
                inp: k,
                format: PanelFormat::Bf16,
            })?;
            assert_eq!(y.dims(), &[m, n]);
            let (xv, wv, yv) = (values(&x), values(&w), values(&y));
            let (xr, wr) = (rounded(&xv), rounded(&wv));
            for r in 0..m {
                for o in 0..n {
                    let dot = |a: &dyn Fn(usize) -> f64, b: &dyn Fn(usize) -> f64| -> f64 {
                        (0..k).map(|c| a(c) * b(c)).sum()
                    };
                    let want = dot(&|c| xr[r * k + c], &|c| wr[o * k + c]);
                    let scale: f64 = (0..k)
                        .map(|c| (xv[r * k + c] * wv[o * k + c]).abs() as f64)
                        .sum();
                    let got = yv[r * n + o] as f64;
                    assert!(
                        (got - want).abs() < 1e-5 * (1.0 + scale),
                        "({m},{k},{n}) [{r}, {o}]: {got} vs bf16 reference {want}"
                    );
                    let exact = dot(&|c| xv[r * k + c] as f64, &|c| wv[o * k + c] as f64);
                    assert!(
                        (got - exact).abs() < 1e-2 * scale,
                        "({m},{k},{n}) [{r}, {o}]: {got} vs f32 {exact} (scale {scale})"
                    );
                }
            }
        }
        Ok(())
    }

    /// The backward from the panels against the naive product of the bf16-rounded gradient and
    /// weights, and through candle's autograd (the op's `bwd`).
    #[test]
    fn grad_input_matches_naive_bf16_product() -> candle_core::Result<()> {
        if !cpu_supported() {
            eprintln!("skipped: this CPU lacks AVX512-BF16");
            return Ok(());
        }
        let dev = Device::Cpu;
        // (3, 40, 4101) and (3, 1000, 300) cross inner-block boundaries (the first into an
        // odd-length last block); (400, 40, 100) has several row tasks.
        for (m, k, n) in SHAPES
            .into_iter()
            .chain([(3, 40, 4101), (3, 1000, 300), (400, 40, 100)])
        {
            let w = Tensor::randn(0f32, 1.0, (n, k), &dev)?;
            let g = Tensor::randn(0f32, 1.0, (m, n), &dev)?;
            let panels = pack(&w)?;
            let got = values(&grad_input(
                &panels,
                PanelFormat::Bf16,
                n,
                k,
                &g.reshape((1, m, n))?,
            )?);
            let x = candle_core::Var::from_tensor(&Tensor::zeros((m, k), DType::F32, &dev)?)?;
            let y = x.as_tensor().apply_op1(PackedMatmul {
                panels,
                out: n,
                inp: k,
                format: PanelFormat::Bf16,
            })?;
            let grads = (y * &g)?.sum_all()?.backward()?;
            let autograd = values(grads.get(x.as_tensor()).expect("x has a gradient"));
            let (gr, wr) = (rounded(&values(&g)), rounded(&values(&w)));
            for r in 0..m {
                for c in 0..k {
                    let want: f64 = (0..n).map(|o| gr[r * n + o] * wr[o * k + c]).sum();
                    let scale: f64 = (0..n).map(|o| (gr[r * n + o] * wr[o * k + c]).abs()).sum();
                    for (what, v) in [
                        ("grad_input", got[r * k + c]),
                        ("autograd", autograd[r * k + c]),
                    ] {
                        assert!(
                            (v as f64 - want).abs() < 1e-5 * (1.0 + scale),
                            "({m},{k},{n}) {what} [{r}, {c}]: {v} vs {want}"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Unpacking gives back exactly the bf16-rounded weight, so a merged export of a bf16 model
    /// is the model that ran.
    #[test]
    fn unpack_gives_the_rounded_weight() -> candle_core::Result<()> {
        let w = Tensor::randn(0f32, 1.0, (45, 37), &Device::Cpu)?;
        let back = values(&unpack(&pack(&w)?, 45, 37)?);
        let want: Vec<f32> = rounded(&values(&w)).iter().map(|&v| v as f32).collect();
        assert_eq!(back, want);
        Ok(())
    }
}
