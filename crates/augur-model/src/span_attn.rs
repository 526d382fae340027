//! Causal attention computed span by span: each run of real tokens that attends only to
//! itself (a left-padded row's tokens, or one sequence of a packed row) gets its own
//! `len x len` scores, with a hand-written backward.
//!
//! The generic path scores every query against every key of its row and masks the rest:
//! a packed row of 384 tokens holding two or three examples pays for 384² scores where its
//! examples need about 2.3x fewer, and a padded row pays for its padding. The masked scores,
//! their softmax and their gradients also went through several full-size passes. Here each
//! span × KV-head is one rayon task of plain GEMMs (the `gemm` crate candle itself uses) and a
//! softmax, and the output comes out in the `[B, T, heads * head_dim]` layout the output
//! projection reads, so the transpose copy goes too.
//!
//! Padding positions (outside every span) get a zero output and pass no gradient: no real
//! token attends to them, so nothing downstream of a real token changes.
//!
//! CPU and f32 only, and only without keys from a cache or shared prefixes
//! ([`spans_of`] decides); everything else takes the generic path.

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu_data::{input_slice, with_f32};
use crate::input::StepInput;
use crate::train_ops::dot;

/// Positions `start..start + len` of row `row`: tokens that attend causally to each other and
/// to nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub row: usize,
    pub start: usize,
    pub len: usize,
}

/// The spans of `input`'s rows, or `None` when its mask is not a set of contiguous
/// self-contained runs (then the generic masked path keeps its exact semantics).
///
/// A run is a maximal stretch of real tokens (mask 1) with one sequence id; each sequence
/// (each row, when the rows are not packed) must form one run.
pub(crate) fn spans_of(input: &StepInput) -> Option<Vec<Span>> {
    let (b, t) = (input.batch, input.len);
    let seg = |i: usize| input.segments.as_ref().map_or(1, |s| s[i]);
    let mut spans = Vec::new();
    for row in 0..b {
        let mut seen = Vec::new();
        let mut pos = 0;
        while pos < t {
            let i = row * t + pos;
            if input.mask[i] == 0 {
                pos += 1;
                continue;
            }
            let id = seg(i);
            if seen.contains(&id) {
                return None;
            }
            seen.push(id);
            let start = pos;
            while pos < t && input.mask[row * t + pos] != 0 && seg(row * t + pos) == id {
                pos += 1;
            }
            spans.push(Span {
                row,
                start,
                len: pos - start,
            });
        }
    }
    Some(spans)
}

/// `softmax(q kᵀ * scale, causal within each span) v` for `q: [B, H, T, D]` and
/// `k, v: [B, KV, T, D]` (H a multiple of KV; query head `h` reads KV head `h / (H / KV)`),
/// as `[B, T, H * D]`. With `grad`, the op keeps its probabilities for the backward.
pub(crate) fn span_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    spans: &Arc<[Span]>,
    scale: f32,
    grad: bool,
) -> candle_core::Result<Tensor> {
    let op = SpanAttention {
        spans: spans.clone(),
        scale,
        keep_probs: grad,
        probs: OnceLock::new(),
    };
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    match grad {
        true => q.apply_op3(&k, &v, op),
        false => q.apply_op3_no_bwd(&k, &v, &op),
    }
}

struct SpanAttention {
    spans: Arc<[Span]>,
    scale: f32,
    keep_probs: bool,
    /// Each task's `rep x len x len` probabilities, in [`Dims::tasks`]'s order. A pass without
    /// gradients keeps none: each task's scratch is freed with the task.
    probs: OnceLock<Vec<Vec<f32>>>,
}

/// `q: [b, h, t, d]`, `k, v: [b, kv, t, d]`.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    h: usize,
    kv: usize,
    t: usize,
    d: usize,
}

impl Dims {
    fn of(q: &[usize], k: &[usize], v: &[usize]) -> candle_core::Result<Self> {
        let (&[b, h, t, d], &[kb, kv, kt, kd]) = (q, k) else {
            candle_core::bail!(
                "span attention: expected q [B, H, T, D], k [B, KV, T, D], got {q:?}, {k:?}"
            );
        };
        if (kb, kt, kd) != (b, t, d) || k != v || kv == 0 || h % kv != 0 {
            candle_core::bail!("span attention: q {q:?}, k {k:?}, v {v:?} do not fit together");
        }
        Ok(Dims { b, h, kv, t, d })
    }

    /// Query heads per KV head.
    fn rep(&self) -> usize {
        self.h / self.kv
    }

    /// One task per span and KV head, with the size of its probabilities.
    fn tasks(&self, spans: &[Span]) -> candle_core::Result<Vec<Task>> {
        if let Some(s) = spans
            .iter()
            .find(|s| s.row >= self.b || s.len == 0 || s.start + s.len > self.t)
        {
            candle_core::bail!(
                "span attention: span {s:?} outside [{}, {}]",
                self.b,
                self.t
            );
        }
        Ok(spans
            .iter()
            .flat_map(|&span| (0..self.kv).map(move |group| Task { span, group }))
            .collect())
    }

    fn probs_len(&self, span: &Span) -> usize {
        self.rep() * span.len * span.len
    }

    /// Offset of `(row, head, position)` in a `[b, heads, t, d]` tensor.
    fn at(&self, heads: usize, row: usize, head: usize, pos: usize) -> usize {
        ((row * heads + head) * self.t + pos) * self.d
    }
}

#[derive(Clone, Copy)]
struct Task {
    span: Span,
    group: usize,
}

impl CustomOp3 for SpanAttention {
    fn name(&self) -> &'static str {
        "augur-span-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = Dims::of(l1.dims(), l2.dims(), l3.dims())?;
        let (q, k, v) = (
            input_slice(s1, l1)?,
            input_slice(s2, l2)?,
            input_slice(s3, l3)?,
        );
        let tasks = dims.tasks(&self.spans)?;
        let (outs, probs): (Vec<Vec<f32>>, Vec<Option<Vec<f32>>>) = tasks
            .par_iter()
            .map(|task| {
                let mut p = vec![0f32; dims.probs_len(&task.span)];
                let out = forward_task(dims, *task, self.scale, q, k, v, &mut p);
                (out, self.keep_probs.then_some(p))
            })
            .unzip();
        let (Dims { b, h, t, d, .. }, rep) = (dims, dims.rep());
        let mut out = vec![0f32; b * t * h * d];
        for (task, o) in tasks.iter().zip(&outs) {
            let Span { row, start, len } = task.span;
            for r in 0..rep {
                let head = task.group * rep + r;
                for i in 0..len {
                    let at = ((row * t + start + i) * h + head) * d;
                    out[at..at + d].copy_from_slice(&o[(r * len + i) * d..][..d]);
                }
            }
        }
        if self.keep_probs
            && self
                .probs
                .set(probs.into_iter().flatten().collect())
                .is_err()
        {
            candle_core::bail!("span attention: an op instance runs once");
        }
        Ok((CpuStorage::F32(out), Shape::from((b, t, h * d))))
    }

    /// Per head, with `P` the probabilities and `dO` the output's gradient:
    /// `dV += Pᵀ dO`, `dS = P ⊙ (dO Vᵀ - rowsum(P ⊙ dO Vᵀ))`, `dQ = scale dS K`,
    /// `dK += scale dSᵀ Q`.
    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(probs) = self.probs.get() else {
            candle_core::bail!("span attention: backward of a forward that kept no probabilities");
        };
        let dims = Dims::of(q.dims(), k.dims(), v.dims())?;
        let tasks = dims.tasks(&self.spans)?;
        let fits = |(p, t): (&Vec<f32>, &Task)| p.len() == dims.probs_len(&t.span);
        if probs.len() != tasks.len() || !probs.iter().zip(&tasks).all(fits) {
            candle_core::bail!("span attention: kept probabilities do not match the spans");
        }
        let (Dims { b, h, kv, t, d }, rep) = (dims, dims.rep());
        let (mut dq, mut dk, mut dv) = (
            vec![0f32; b * h * t * d],
            vec![0f32; b * kv * t * d],
            vec![0f32; b * kv * t * d],
        );
        with_f32(q, |q| {
            with_f32(k, |k| {
                with_f32(v, |v| {
                    with_f32(grad_res, |g| {
                        let grads: Vec<TaskGrads> = tasks
                            .par_iter()
                            .zip(probs)
                            .map(|(task, p)| {
                                backward_task(dims, *task, self.scale, [q, k, v, g], p)
                            })
                            .collect();
                        for (task, gr) in tasks.iter().zip(grads) {
                            let Span { row, start, len } = task.span;
                            let at = dims.at(kv, row, task.group, start);
                            dk[at..at + len * d].copy_from_slice(&gr.dk);
                            dv[at..at + len * d].copy_from_slice(&gr.dv);
                            for r in 0..rep {
                                let at = dims.at(h, row, task.group * rep + r, start);
                                dq[at..at + len * d]
                                    .copy_from_slice(&gr.dq[r * len * d..][..len * d]);
                            }
                        }
                        Ok(())
                    })
                })
            })
        })?;
        let grad = |x: Vec<f32>, like: &Tensor| Tensor::from_vec(x, like.shape(), like.device());
        Ok((Some(grad(dq, q)?), Some(grad(dk, k)?), Some(grad(dv, v)?)))
    }
}

/// The task's output, `rep x len x d` (head after head), and its probabilities into `p`.
fn forward_task(
    dims: Dims,
    task: Task,
    scale: f32,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    p: &mut [f32],
) -> Vec<f32> {
    let Span { row, start, len } = task.span;
    let d = dims.d;
    let at = dims.at(dims.kv, row, task.group, start);
    let (kb, vb) = (&k[at..at + len * d], &v[at..at + len * d]);
    let mut out = vec![0f32; dims.rep() * len * d];
    for (r, (p, o)) in p
        .chunks_exact_mut(len * len)
        .zip(out.chunks_exact_mut(len * d))
        .enumerate()
    {
        let at = dims.at(dims.h, row, task.group * dims.rep() + r, start);
        let qb = &q[at..at + len * d];
        matmul(
            p,
            View::rows(qb, len, d),
            View::rows(kb, len, d).t(),
            scale,
            false,
        );
        for (i, row) in p.chunks_exact_mut(len).enumerate() {
            causal_softmax(row, i);
        }
        matmul(
            o,
            View::rows(p, len, len),
            View::rows(vb, len, d),
            1.0,
            false,
        );
    }
    out
}

/// One task's gradients: `dq` for its `rep` query heads (`rep x len x d`), `dk`, `dv`.
struct TaskGrads {
    dq: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
}

fn backward_task(dims: Dims, task: Task, scale: f32, qkvg: [&[f32]; 4], p: &[f32]) -> TaskGrads {
    let [q, k, v, g] = qkvg;
    let Span { row, start, len } = task.span;
    let (d, rep) = (dims.d, dims.rep());
    let at = dims.at(dims.kv, row, task.group, start);
    let (kb, vb) = (&k[at..at + len * d], &v[at..at + len * d]);
    let mut grads = TaskGrads {
        dq: vec![0f32; rep * len * d],
        dk: vec![0f32; len * d],
        dv: vec![0f32; len * d],
    };
    let mut ds = vec![0f32; len * len];
    for (r, (p, dq)) in p
        .chunks_exact(len * len)
        .zip(grads.dq.chunks_exact_mut(len * d))
        .enumerate()
    {
        let head = task.group * rep + r;
        let at = dims.at(dims.h, row, head, start);
        let qb = &q[at..at + len * d];
        // The output's gradient rows of this head: `[B, T, H * D]`, row stride H * D.
        let row_stride = dims.h * d;
        let go_at = (row * dims.t + start) * row_stride + head * d;
        let go = View {
            data: &g[go_at..go_at + (len - 1) * row_stride + d],
            rows: len,
            cols: d,
            rs: row_stride,
            cs: 1,
        };
        let pv = View::rows(p, len, len);
        matmul(&mut grads.dv, pv.t(), go, 1.0, true);
        matmul(&mut ds, go, View::rows(vb, len, d).t(), 1.0, false);
        for (i, (ds, p)) in ds
            .chunks_exact_mut(len)
            .zip(p.chunks_exact(len))
            .enumerate()
        {
            let dot = dot(&ds[..=i], &p[..=i], None);
            for (ds, p) in ds[..=i].iter_mut().zip(&p[..=i]) {
                *ds = p * (*ds - dot);
            }
            ds[i + 1..].fill(0.0);
        }
        let dsv = View::rows(&ds, len, len);
        matmul(dq, dsv, View::rows(kb, len, d), scale, false);
        matmul(&mut grads.dk, dsv.t(), View::rows(qb, len, d), scale, true);
    }
    grads
}

/// Softmax of `row[..=i]` in place (query `i` sees keys `0..=i`); later keys get 0.
fn causal_softmax(row: &mut [f32], i: usize) {
    let (seen, later) = row.split_at_mut(i + 1);
    let max = seen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for x in seen.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    let inv = 1.0 / sum;
    seen.iter_mut().for_each(|x| *x *= inv);
    later.fill(0.0);
}

/// A strided matrix over a slice: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> View<'a> {
    /// A row-major `rows x cols` matrix.
    fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        View {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose, without moving data.
    fn t(self) -> Self {
        View {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Whether every element lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `dst = scale * a b` (row-major `a.rows x b.cols`), or `dst += scale * a b` with
/// `accumulate`; single-threaded (the callers run one task per rayon thread).
fn matmul(dst: &mut [f32], a: View, b: View, scale: f32, accumulate: bool) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    assert!(
        b.rows == k && dst.len() == m * n && a.in_bounds() && b.in_bounds(),
        "span attention: matmul operands out of shape"
    );
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    // SAFETY: `in_bounds` and the length check above keep every index `gemm` computes from
    // these strides inside the three slices; `dst` is borrowed mutably, so it aliases neither.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var, D};

    use super::*;

    /// Two rows of 7: row 0 packs two sequences of 3 after one pad, row 1 is one sequence of
    /// 5 after two pads.
    fn spans() -> Arc<[Span]> {
        let s = |row, start, len| Span { row, start, len };
        vec![s(0, 1, 3), s(0, 4, 3), s(1, 2, 5)].into()
    }

    const DIMS: (usize, usize, usize, usize, usize) = (2, 4, 2, 7, 5);

    fn inputs(seed: u64) -> candle_core::Result<(Var, Var, Var, Tensor)> {
        let (b, h, kv, t, d) = DIMS;
        let dev = Device::Cpu;
        let mut x = seed as f32;
        let mut next = |n: usize| {
            (0..n)
                .map(|_| {
                    x = (x * 1.7 + 0.31).fract() + 0.13;
                    (x * 6.1).sin()
                })
                .collect::<Vec<f32>>()
        };
        let q = Var::from_vec(next(b * h * t * d), (b, h, t, d), &dev)?;
        let k = Var::from_vec(next(b * kv * t * d), (b, kv, t, d), &dev)?;
        let v = Var::from_vec(next(b * kv * t * d), (b, kv, t, d), &dev)?;
        let w = Tensor::from_vec(next(b * t * h * d), (b, t, h * d), &dev)?;
        Ok((q, k, v, w))
    }

    /// The same attention from candle's own differentiable ops, span by span and head by head:
    /// `sum(out ⊙ w)` over the spans' positions.
    fn reference_loss(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        w: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (_, h, kv, _, d) = DIMS;
        let mut total = Tensor::zeros((), candle_core::DType::F32, &Device::Cpu)?;
        for s in spans().iter() {
            let causal: Vec<f32> = (0..s.len * s.len)
                .map(|i| {
                    if i % s.len <= i / s.len {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
                .collect();
            let causal = Tensor::from_vec(causal, (s.len, s.len), &Device::Cpu)?;
            for head in 0..h {
                let g = head / (h / kv);
                let qs = q.get(s.row)?.get(head)?.narrow(0, s.start, s.len)?;
                let ks = k.get(s.row)?.get(g)?.narrow(0, s.start, s.len)?;
                let vs = v.get(s.row)?.get(g)?.narrow(0, s.start, s.len)?;
                let scores = ((qs.matmul(&ks.t()?)? * (1.0 / (d as f64).sqrt()))? + &causal)?;
                let out = candle_nn::ops::softmax(&scores, D::Minus1)?.matmul(&vs)?;
                let ws = w
                    .get(s.row)?
                    .narrow(0, s.start, s.len)?
                    .narrow(1, head * d, d)?;
                total = (total + (out * ws)?.sum_all()?)?;
            }
        }
        Ok(total)
    }

    fn ours(q: &Tensor, k: &Tensor, v: &Tensor) -> candle_core::Result<Tensor> {
        let d = DIMS.4;
        span_attention(q, k, v, &spans(), 1.0 / (d as f32).sqrt(), true)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> candle_core::Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    #[test]
    fn output_and_gradients_match_candle_autograd() -> candle_core::Result<()> {
        let (q, k, v, w) = inputs(3)?;
        let out = ours(&q, &k, &v)?;
        let loss = (&out * &w)?.sum_all()?;
        let want = reference_loss(&q, &k, &v, &w)?;
        let (l, r) = (loss.to_scalar::<f32>()?, want.to_scalar::<f32>()?);
        assert!((l - r).abs() < 1e-4, "loss {l} vs reference {r}");
        let (g, gr) = (loss.backward()?, want.backward()?);
        for (name, x) in [("q", &q), ("k", &k), ("v", &v)] {
            let (a, b) = (g.get(x).expect("grad"), gr.get(x).expect("reference grad"));
            let diff = max_diff(a, b)?;
            assert!(diff < 1e-5, "d{name} differs from autograd by {diff}");
        }
        // Padding positions: zero output.
        let (_, h, _, _, d) = DIMS;
        for (row, pos) in [(0, 0), (1, 0), (1, 1)] {
            let pad = out.get(row)?.get(pos)?.to_vec1::<f32>()?;
            assert_eq!(pad, vec![0.0; h * d], "row {row} position {pos}");
        }
        Ok(())
    }

    #[test]
    fn gradients_match_finite_differences() -> candle_core::Result<()> {
        let (q, k, v, w) = inputs(11)?;
        let loss = |q: &Tensor, k: &Tensor, v: &Tensor| -> candle_core::Result<f64> {
            let out = span_attention(q, k, v, &spans(), 1.0 / (DIMS.4 as f32).sqrt(), false)?;
            (out.to_dtype(candle_core::DType::F64)? * w.to_dtype(candle_core::DType::F64)?)?
                .sum_all()?
                .to_scalar::<f64>()
        };
        let grads = (&ours(&q, &k, &v)? * &w)?.sum_all()?.backward()?;
        let eps = 1e-2f32;
        for (which, x) in [&q, &k, &v].into_iter().enumerate() {
            let g = grads
                .get(x)
                .expect("grad")
                .flatten_all()?
                .to_vec1::<f32>()?;
            let base = x.flatten_all()?.to_vec1::<f32>()?;
            // A few coordinates of each input, in padded and real positions alike.
            for i in (0..base.len()).step_by(7) {
                let nudged = |by: f32| -> candle_core::Result<Tensor> {
                    let mut y = base.clone();
                    y[i] += by;
                    Tensor::from_vec(y, x.shape(), &Device::Cpu)
                };
                let (plus, minus) = (nudged(eps)?, nudged(-eps)?);
                let f = |t: &Tensor| match which {
                    0 => loss(t, &k, &v),
                    1 => loss(&q, t, &v),
                    _ => loss(&q, &k, t),
                };
                let fd = (f(&plus)? - f(&minus)?) / (2.0 * eps as f64);
                assert!(
                    (fd - g[i] as f64).abs() < 2e-3,
                    "input {which} element {i}: finite difference {fd}, backward {}",
                    g[i]
                );
            }
        }
        Ok(())
    }

    #[test]
    fn spans_follow_the_mask_and_the_packing() -> crate::Result<()> {
        let dev = Device::Cpu;
        let packed = StepInput::packed(&[vec![vec![1, 2, 3], vec![4, 5]], vec![vec![6]]], 0, &dev)?;
        let s = |row, start, len| Span { row, start, len };
        assert_eq!(
            spans_of(&packed),
            Some(vec![s(0, 0, 3), s(0, 3, 2), s(1, 4, 1)])
        );
        let padded = StepInput::left_padded(&[vec![1, 2], vec![3, 4, 5, 6]], 0, &dev)?;
        assert_eq!(spans_of(&padded), Some(vec![s(0, 2, 2), s(1, 0, 4)]));
        // A row whose real tokens have a hole attends across it under the mask: no spans.
        let mut holed = padded;
        holed.mask = vec![1, 0, 1, 1, 1, 1, 1, 1];
        assert_eq!(spans_of(&holed), None);
        Ok(())
    }
}
