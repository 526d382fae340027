//! UDS scores (utility + diversity, arXiv 2510.16882) of one example from its logits matrix
//! `L: [T, V]` (every real position of the teacher-forced input, under the policy):
//!
//! - utility `s_intra = ‖L‖_*`, the nuclear norm (sum of singular values). The singular values
//!   of `L` are the square roots of the eigenvalues of the Gram matrix `L·Lᵀ` (`T×T`), which
//!   is small when `T ≪ V` (a few hundred tokens against a 49k–150k vocabulary): one matmul
//!   and a symmetric eigensolver replace an SVD of the wide matrix. (`LᵀL` when `V < T`.)
//! - diversity `s_inter` = mean L2 distance of the example's sketch `z` to the sketches of
//!   previously *selected* examples in a FIFO buffer (0 while it is empty).
//! - `z` is a bilinear SRFT-style sketch: on the vocab axis ±1 signs, the real part of an
//!   FFT, 128 random frequencies scaled by √(V/128); then on the time axis (zero-padded to
//!   `max_seq_len = P`) the same down to 8 frequencies scaled by √(P/8): `d = 8·128 = 1024`.
//!   Frequencies are drawn uniformly with replacement, as in the authors' code.

use std::collections::VecDeque;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use crate::grpo::data::SplitMix64;
use crate::{Error, Result};

/// Frequencies kept on the vocab axis.
pub const VOCAB_DIM: usize = 128;
/// Frequencies kept on the time axis.
pub const TIME_DIM: usize = 8;

/// Sum of the singular values of `logits: [T, V]`, via the eigenvalues of the smaller Gram
/// matrix (computed in f32 by candle, solved in f64 by nalgebra; tiny negative eigenvalues
/// from rounding count as 0).
pub fn nuclear_norm(logits: &Tensor) -> Result<f64> {
    let (t, v) = logits.dims2()?;
    let l = logits.to_dtype(DType::F32)?;
    let gram = match t <= v {
        true => l.matmul(&l.t()?)?,
        false => l.t()?.matmul(&l)?,
    };
    let n = t.min(v);
    let data: Vec<f64> = gram
        .flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(f64::from)
        .collect();
    let g = nalgebra::DMatrix::from_row_slice(n, n, &data);
    Ok(g.symmetric_eigenvalues()
        .iter()
        .map(|&e| e.max(0.0).sqrt())
        .sum())
}

/// One axis of the sketch: signs, a DFT of the axis length, kept frequencies and scale.
struct AxisSketch {
    signs: Vec<f32>,
    freqs: Vec<usize>,
    scale: f32,
    fft: Arc<dyn Fft<f32>>,
}

impl AxisSketch {
    fn new(len: usize, keep: usize, rng: &mut SplitMix64, planner: &mut FftPlanner<f32>) -> Self {
        Self {
            signs: (0..len)
                .map(|_| if rng.next_u64() & 1 == 0 { 1.0 } else { -1.0 })
                .collect(),
            freqs: (0..keep).map(|_| rng.below(len)).collect(),
            scale: (len as f32 / keep as f32).sqrt(),
            fft: planner.plan_fft_forward(len),
        }
    }

    /// `scale · Re(FFT(signs ⊙ x))[freqs]` for `x` shorter than the axis (zero-padded).
    fn apply(&self, x: impl Iterator<Item = f32>, buf: &mut Vec<Complex<f32>>) -> Vec<f32> {
        buf.clear();
        buf.extend(x.zip(&self.signs).map(|(x, s)| Complex::new(x * s, 0.0)));
        buf.resize(self.signs.len(), Complex::new(0.0, 0.0));
        self.fft.process(buf);
        self.freqs.iter().map(|&k| buf[k].re * self.scale).collect()
    }
}

/// The seeded bilinear sketch `z = S_t · L · S_vᵀ` of a `[T ≤ P, V]` logits matrix.
pub struct Projector {
    vocab: AxisSketch,
    time: AxisSketch,
}

impl Projector {
    /// A sketch for vocabulary `vocab` and sequences up to `max_len` tokens.
    pub fn new(vocab: usize, max_len: usize, seed: u64) -> Self {
        let mut rng = SplitMix64(seed ^ 0x5544_5300);
        let mut planner = FftPlanner::new();
        Self {
            vocab: AxisSketch::new(vocab, VOCAB_DIM, &mut rng, &mut planner),
            time: AxisSketch::new(max_len, TIME_DIM, &mut rng, &mut planner),
        }
    }

    /// `z` (row-major `[TIME_DIM, VOCAB_DIM]`) of the row-major `[t, V]` matrix `logits`.
    pub fn project(&self, logits: &[f32], t: usize) -> Result<Vec<f32>> {
        let v = self.vocab.signs.len();
        if logits.len() != t * v || t > self.time.signs.len() {
            return Err(Error::Shape(format!(
                "UDS sketch: {} values for {t} positions of a {v}-entry vocabulary (at most {} positions)",
                logits.len(),
                self.time.signs.len()
            )));
        }
        let mut buf = Vec::new();
        // Vocab axis: [t, VOCAB_DIM].
        let rows: Vec<Vec<f32>> = logits
            .chunks(v)
            .map(|row| self.vocab.apply(row.iter().copied(), &mut buf))
            .collect();
        // Time axis, one column at a time: [TIME_DIM, VOCAB_DIM].
        let mut z = vec![0f32; TIME_DIM * VOCAB_DIM];
        for c in 0..VOCAB_DIM {
            let col = self.time.apply(rows.iter().map(|r| r[c]), &mut buf);
            for (k, x) in col.into_iter().enumerate() {
                z[k * VOCAB_DIM + c] = x;
            }
        }
        Ok(z)
    }
}

/// The sketches of the last `capacity` selected examples, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct DiversityBuffer {
    capacity: usize,
    rows: VecDeque<Vec<f32>>,
}

impl DiversityBuffer {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            rows: VecDeque::with_capacity(capacity),
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Mean Euclidean distance of `z` to the buffered sketches; 0 when there are none.
    pub fn mean_distance(&self, z: &[f32]) -> f64 {
        if self.rows.is_empty() {
            return 0.0;
        }
        let total: f64 = self
            .rows
            .iter()
            .map(|r| {
                r.iter()
                    .zip(z)
                    .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .sum();
        total / self.rows.len() as f64
    }

    /// Appends `z`, dropping the oldest sketch when full.
    pub fn push(&mut self, z: Vec<f32>) {
        if self.rows.len() == self.capacity {
            self.rows.pop_front();
        }
        self.rows.push_back(z);
    }

    /// The buffer as a `[n, d]` tensor (oldest first), for checkpoints; `None` when empty.
    pub fn to_tensor(&self) -> Result<Option<Tensor>> {
        let Some(d) = self.rows.front().map(Vec::len) else {
            return Ok(None);
        };
        let flat: Vec<f32> = self.rows.iter().flatten().copied().collect();
        Ok(Some(Tensor::from_vec(
            flat,
            (self.rows.len(), d),
            &Device::Cpu,
        )?))
    }

    /// Refills the buffer from [`DiversityBuffer::to_tensor`]'s output.
    pub fn load_tensor(&mut self, t: &Tensor) -> Result<()> {
        self.rows.clear();
        for row in t.to_dtype(DType::F32)?.to_vec2::<f32>()? {
            self.push(row);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut r = SplitMix64(seed);
        (0..n)
            .map(|_| (r.next_u64() >> 11) as f32 / (1u64 << 53) as f32 * 4.0 - 2.0)
            .collect()
    }

    #[test]
    fn nuclear_norm_matches_svd_and_hand_values() {
        // Rank one: ‖u vᵀ‖_* = ‖u‖·‖v‖ = 5 · 13.
        let (u, v) = ([3f32, 4.0], [5f32, 12.0, 0.0]);
        let outer: Vec<f32> = u
            .iter()
            .flat_map(|a| v.iter().map(move |b| a * b))
            .collect();
        let l = Tensor::from_vec(outer, (2, 3), &Device::Cpu).unwrap();
        assert!((nuclear_norm(&l).unwrap() - 65.0).abs() < 1e-3);
        // Diagonal: the sum of |entries|.
        let d = Tensor::from_vec(vec![2f32, 0., 0., 0., -3., 0.], (2, 3), &Device::Cpu).unwrap();
        assert!((nuclear_norm(&d).unwrap() - 5.0).abs() < 1e-4);
        // Wide and tall random matrices against nalgebra's SVD of the matrix itself.
        for (t, v, seed) in [(5, 40, 1), (40, 5, 2), (7, 7, 3)] {
            let x = values(t * v, seed);
            let l = Tensor::from_vec(x.clone(), (t, v), &Device::Cpu).unwrap();
            let m = nalgebra::DMatrix::from_row_slice(
                t,
                v,
                &x.iter().map(|&a| a as f64).collect::<Vec<_>>(),
            );
            let want: f64 = m.singular_values().iter().sum();
            let got = nuclear_norm(&l).unwrap();
            assert!((got - want).abs() < 1e-4 * want, "{t}x{v}: {got} vs {want}");
        }
    }

    /// `Re(Σ_n x_n e^{-2πikn/N})` by the definition.
    fn naive_dft_re(x: &[f64], k: usize) -> f64 {
        let n = x.len() as f64;
        x.iter()
            .enumerate()
            .map(|(j, v)| v * (2.0 * std::f64::consts::PI * (k * j) as f64 / n).cos())
            .sum()
    }

    #[test]
    fn projection_matches_a_naive_dft() {
        let (t, v, max_len) = (5, 300, 12);
        let p = Projector::new(v, max_len, 7);
        let l = values(t * v, 11);
        let z = p.project(&l, t).unwrap();
        assert_eq!(z.len(), TIME_DIM * VOCAB_DIM);
        // Vocab stage by the definition.
        let vs = &p.vocab;
        let m: Vec<Vec<f64>> = l
            .chunks(v)
            .map(|row| {
                let x: Vec<f64> = row
                    .iter()
                    .zip(&vs.signs)
                    .map(|(a, s)| (*a * s) as f64)
                    .collect();
                vs.freqs
                    .iter()
                    .map(|&k| naive_dft_re(&x, k) * vs.scale as f64)
                    .collect()
            })
            .collect();
        // Time stage, zero-padded to max_len.
        let ts = &p.time;
        for c in 0..VOCAB_DIM {
            let mut col: Vec<f64> = (0..max_len)
                .map(|i| if i < t { m[i][c] } else { 0.0 })
                .collect();
            for (x, s) in col.iter_mut().zip(&ts.signs) {
                *x *= *s as f64;
            }
            for (k, &f) in ts.freqs.iter().enumerate() {
                let want = naive_dft_re(&col, f) * ts.scale as f64;
                let got = z[k * VOCAB_DIM + c] as f64;
                assert!(
                    (got - want).abs() < 1e-3 * (1.0 + want.abs()),
                    "{got} vs {want}"
                );
            }
        }
        // Same seed, same sketch; another seed, another one.
        assert_eq!(Projector::new(v, max_len, 7).project(&l, t).unwrap(), z);
        assert_ne!(Projector::new(v, max_len, 8).project(&l, t).unwrap(), z);
        assert!(p.project(&l, t + 1).is_err());
    }

    #[test]
    fn buffer_distances_by_hand_and_fifo() {
        let mut b = DiversityBuffer::new(2);
        assert_eq!(b.mean_distance(&[1.0, 1.0]), 0.0);
        b.push(vec![0.0, 0.0]);
        b.push(vec![3.0, 4.0]);
        // From (0, 0): distances 0 and 5.
        assert!((b.mean_distance(&[0.0, 0.0]) - 2.5).abs() < 1e-12);
        // From (3, 0): 3 and 4.
        assert!((b.mean_distance(&[3.0, 0.0]) - 3.5).abs() < 1e-12);
        // The third push evicts (0, 0): from (3, 0) only (3, 4) at distance 4 and (6, 8) at √73.
        b.push(vec![6.0, 8.0]);
        assert_eq!(b.len(), 2);
        let want = (4.0 + 73f64.sqrt()) / 2.0;
        assert!((b.mean_distance(&[3.0, 0.0]) - want).abs() < 1e-9);
        let mut c = DiversityBuffer::new(2);
        c.load_tensor(&b.to_tensor().unwrap().unwrap()).unwrap();
        assert_eq!(c, b);
        assert!(DiversityBuffer::new(3).to_tensor().unwrap().is_none());
    }
}
