//! GPS's batch acquisition: greedy utility + diversity.
//!
//! Each pick maximises  −(γ̂_i − γ*)² + λ_div · div_i  over the remaining candidates, where
//! div_i is the min (or mean) cosine distance of prompt i's embedding to the *anchors*: the
//! prompts already chosen for this batch and those of the last `window` batches (history-
//! anchored diversity). With no anchors div_i is a constant (2, resp. 1), so the first pick is
//! pure utility.
//!
//! In min mode every score can only fall as anchors are added, so the greedy runs *lazily*
//! (a max-heap of stale upper bounds, refreshed only when one reaches the top), which picks
//! exactly what the eager loop picks while touching few candidates per round.
//!
//! Cost: O(pool·d) to normalise, O(pool·window·B·d) to seed distances to recent batches (one
//! GEMM), then B rounds of O(pool) argmax + O(pool·d) distance update (parallel over candidate
//! chunks): O(pool·B·(1 + window)·d) in all. Measured, with the GPS forward pass included, in
//! `examples/gps_timing.rs`.

use super::{Acquisition, Scores};
use crate::embedding::{read, EmbeddingTable, SharedEmbeddings};
use crate::error::{Result, SamplerError};
use crate::outcome::Outcome;
use crate::predictor::{DiversityMode, Quantity};
use crate::topk::tie_key;
use rand::RngCore;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::VecDeque;

const PAR_CHUNK: usize = 2048;

/// Greedy −(γ̂−γ*)² + λ_div·diversity batch construction over shared embeddings.
pub struct DiverseGreedy {
    /// Target success rate γ*.
    pub gamma: f32,
    /// Weight of the diversity term.
    pub lambda_div: f32,
    /// Min or mean cosine distance.
    pub mode: DiversityMode,
    /// Recent batches kept as anchors.
    pub window: usize,
    emb: SharedEmbeddings,
    recent: VecDeque<Vec<u32>>,
}

impl DiverseGreedy {
    /// A rule reading embeddings from `emb` (share it with the predictor).
    pub fn new(
        gamma: f32,
        lambda_div: f32,
        mode: DiversityMode,
        window: usize,
        emb: SharedEmbeddings,
    ) -> Result<Self> {
        if !(lambda_div >= 0.0 && lambda_div.is_finite() && (0.0..=1.0).contains(&gamma)) {
            return Err(SamplerError::InvalidConfig(format!(
                "diverse: lambda_div {lambda_div} must be >= 0 and gamma {gamma} in [0, 1]"
            )));
        }
        Ok(DiverseGreedy {
            gamma,
            lambda_div,
            mode,
            window,
            emb,
            recent: VecDeque::new(),
        })
    }
}

/// Unit-norm copy of `id`'s embedding (zero vector stays zero).
fn unit(t: &EmbeddingTable, id: u32) -> Result<Vec<f32>> {
    let e = t.require(id)?;
    let n = e.iter().map(|x| x * x).sum::<f32>().sqrt();
    let s = if n > 0.0 { 1.0 / n } else { 0.0 };
    Ok(e.iter().map(|x| x * s).collect())
}

/// Dot product with 8 independent accumulators, so the compiler can vectorise it.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Running diversity per candidate: min distance, or sum of distances and count.
struct Div {
    mode: DiversityMode,
    acc: Vec<f32>,
    anchors: usize,
}

impl Div {
    fn value(&self, i: usize) -> f32 {
        match (self.anchors, self.mode) {
            (_, DiversityMode::Min) => self.acc[i],
            (0, DiversityMode::Mean) => 1.0,
            (n, DiversityMode::Mean) => self.acc[i] / n as f32,
        }
    }

    /// Folds many anchors (row-major unit vectors) in at once: one [n, d] × [d, m] GEMM in
    /// candle instead of m memory-bound passes over the candidates.
    fn add_many(&mut self, units: &[f32], d: usize, anchors: Vec<f32>) -> Result<()> {
        let m = anchors.len() / d;
        if m == 0 {
            return Ok(());
        }
        let cerr = |e: candle_core::Error| SamplerError::InvalidState(format!("diverse: {e}"));
        let dev = candle_core::Device::Cpu;
        let u = candle_core::Tensor::from_slice(units, (self.acc.len(), d), &dev).map_err(cerr)?;
        let a = candle_core::Tensor::from_vec(anchors, (m, d), &dev).map_err(cerr)?;
        let dist = (|| {
            let dist = u.matmul(&a.t()?)?.affine(-1.0, 1.0)?;
            match self.mode {
                DiversityMode::Min => dist.min(1),
                DiversityMode::Mean => dist.sum(1),
            }?
            .to_vec1::<f32>()
        })()
        .map_err(cerr)?;
        for (v, x) in self.acc.iter_mut().zip(dist) {
            match self.mode {
                DiversityMode::Min => *v = v.min(x),
                DiversityMode::Mean => *v += x,
            }
        }
        self.anchors += m;
        Ok(())
    }

    /// Folds anchor `a` (unit vector) into every candidate's running value.
    fn add(&mut self, units: &[f32], d: usize, a: &[f32]) {
        let mode = self.mode;
        self.acc
            .par_chunks_mut(PAR_CHUNK)
            .zip(units.par_chunks(PAR_CHUNK * d))
            .for_each(|(acc, u)| {
                for (v, row) in acc.iter_mut().zip(u.chunks_exact(d)) {
                    let dist = 1.0 - dot(row, a);
                    match mode {
                        DiversityMode::Min => *v = v.min(dist),
                        DiversityMode::Mean => *v += dist,
                    }
                }
            });
        self.anchors += 1;
    }
}

/// Heap entry: score upper bound, random tie key (larger wins, as in the eager argmax), position.
#[derive(PartialEq)]
struct Entry(f32, u64, usize);
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
    }
}

/// Lazy greedy for min-distance diversity (scores are non-increasing as anchors are added).
fn lazy_greedy(
    utility: &[f32],
    ties: &[u64],
    lambda: f32,
    div: &Div,
    units: &[f32],
    d: usize,
    b: usize,
) -> Vec<usize> {
    let mut acc = div.acc.clone();
    let mut seen = vec![0usize; utility.len()];
    let mut heap: std::collections::BinaryHeap<Entry> = (0..utility.len())
        .map(|i| Entry(utility[i] + lambda * acc[i], ties[i], i))
        .collect();
    let mut chosen: Vec<usize> = Vec::with_capacity(b);
    while chosen.len() < b {
        let Some(Entry(_, _, i)) = heap.pop() else {
            break;
        };
        if seen[i] == chosen.len() {
            chosen.push(i);
            continue;
        }
        let row = &units[i * d..(i + 1) * d];
        for &c in &chosen[seen[i]..] {
            acc[i] = acc[i].min(1.0 - dot(row, &units[c * d..(c + 1) * d]));
        }
        seen[i] = chosen.len();
        heap.push(Entry(utility[i] + lambda * acc[i], ties[i], i));
    }
    chosen
}

impl Acquisition for DiverseGreedy {
    fn name(&self) -> &str {
        "diverse"
    }

    fn needs(&self) -> Vec<Quantity> {
        vec![Quantity::Mean]
    }

    fn select(
        &mut self,
        candidates: &[u32],
        b: usize,
        scores: &Scores,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<usize>> {
        let n = candidates.len();
        let tie_seed = rng.next_u64();
        let ties: Vec<u64> = candidates.iter().map(|&id| tie_key(tie_seed, id)).collect();
        let mean = scores.get(Quantity::Mean, n)?;
        let t = read(&self.emb)?;
        let d = t.dim().max(1);
        let mut units = Vec::with_capacity(n * d);
        for &id in candidates {
            units.extend(unit(&t, id)?);
        }
        let mut div = Div {
            mode: self.mode,
            acc: vec![
                match self.mode {
                    // The largest cosine distance: a constant until the first anchor.
                    DiversityMode::Min => 2.0,
                    DiversityMode::Mean => 0.0,
                };
                n
            ],
            anchors: 0,
        };
        if self.lambda_div > 0.0 {
            let mut anchors = Vec::new();
            for &id in self.recent.iter().flatten() {
                if t.get(id).is_some() {
                    anchors.extend(unit(&t, id)?);
                }
            }
            div.add_many(&units, d, anchors)?;
        }
        let utility: Vec<f32> = mean.iter().map(|p| -(p - self.gamma).powi(2)).collect();
        if self.mode == DiversityMode::Min && self.lambda_div > 0.0 {
            return Ok(lazy_greedy(
                &utility,
                &ties,
                self.lambda_div,
                &div,
                &units,
                d,
                b,
            ));
        }
        let mut taken = vec![false; n];
        let mut chosen = Vec::with_capacity(b);
        for _ in 0..b {
            let mut best = (f32::NEG_INFINITY, 0u64, usize::MAX);
            for i in (0..n).filter(|&i| !taken[i]) {
                let u = utility[i] + self.lambda_div * div.value(i);
                let better = u > best.0 || (u == best.0 && ties[i] > best.1);
                if better || best.2 == usize::MAX {
                    best = (u, ties[i], i);
                }
            }
            let i = best.2;
            taken[i] = true;
            chosen.push(i);
            if self.lambda_div > 0.0 {
                let a = units[i * d..(i + 1) * d].to_vec();
                div.add(&units, d, &a);
            }
        }
        Ok(chosen)
    }

    fn observe(&mut self, outcomes: &[Outcome]) -> Result<()> {
        if self.window == 0 {
            return Ok(());
        }
        self.recent
            .push_back(outcomes.iter().map(|o| o.id).collect());
        while self.recent.len() > self.window {
            self.recent.pop_front();
        }
        Ok(())
    }

    fn save(&self) -> Result<serde_json::Value> {
        Ok(serde_json::to_value(&self.recent)?)
    }

    fn load(&mut self, state: serde_json::Value) -> Result<()> {
        self.recent = serde_json::from_value(state)
            .map_err(|e| SamplerError::InvalidState(format!("diverse state: {e}")))?;
        Ok(())
    }

    fn embeddings(&self) -> Option<SharedEmbeddings> {
        Some(self.emb.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedding::EmbeddingTable;
    use rand::SeedableRng;

    /// Two tight clusters of near-identical prompts, all predicted at γ̂ = 0.5 except that
    /// cluster A is very slightly better: pure utility takes only A, diversity alternates.
    #[test]
    fn diversity_spreads_the_batch() {
        let emb = EmbeddingTable::shared(0);
        let mut ids = Vec::new();
        let mut data = Vec::new();
        for i in 0..10u32 {
            ids.push(i);
            let eps = i as f32 * 1e-3;
            if i < 5 {
                data.extend([1.0, eps, 0.0]);
            } else {
                data.extend([0.0, eps, 1.0]);
            }
        }
        emb.write().unwrap().set(&ids, &data).unwrap();
        let scores = Scores {
            mean: ids
                .iter()
                .map(|&i| if i < 5 { 0.5 } else { 0.45 })
                .collect(),
            ..Default::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut plain = DiverseGreedy::new(0.5, 0.0, DiversityMode::Min, 0, emb.clone()).unwrap();
        let p = plain.select(&ids, 2, &scores, &mut rng).unwrap();
        assert!(p.iter().all(|&i| i < 5), "utility only: {p:?}");
        let mut div = DiverseGreedy::new(0.5, 0.1, DiversityMode::Min, 2, emb.clone()).unwrap();
        let p = div.select(&ids, 2, &scores, &mut rng).unwrap();
        assert!(p[0] < 5 && p[1] >= 5, "one per cluster: {p:?}");
        // History anchoring: after cluster A was trained on, the first pick moves to B.
        div.observe(&[Outcome::new(0, 4, 8), Outcome::new(1, 4, 8)])
            .unwrap();
        let p = div.select(&ids, 1, &scores, &mut rng).unwrap();
        assert!(p[0] >= 5, "recent batch repels: {p:?}");
        let mut mean = DiverseGreedy::new(0.5, 0.1, DiversityMode::Mean, 0, emb.clone()).unwrap();
        let p = mean.select(&ids, 2, &scores, &mut rng).unwrap();
        assert!(p[0] < 5 && p[1] >= 5, "mean mode too: {p:?}");
        assert!(div.select(&[0, 99], 1, &scores, &mut rng).is_err());
        // Lazy (min) and an eager reference agree on a random instance.
        let n = 300u32;
        let ids: Vec<u32> = (100..100 + n).collect();
        let data: Vec<f32> = (0..n as u64 * 3)
            .map(|i| crate::random::hash_unit(3, i) - 0.5)
            .collect();
        emb.write().unwrap().set(&ids, &data).unwrap();
        let sc = Scores {
            mean: (0..n as u64)
                .map(|i| crate::random::hash_unit(4, i))
                .collect(),
            ..Default::default()
        };
        let mut lazy = DiverseGreedy::new(0.5, 0.05, DiversityMode::Min, 0, emb.clone()).unwrap();
        let got = lazy.select(&ids, 20, &sc, &mut rng).unwrap();
        let t = emb.read().unwrap();
        let units: Vec<Vec<f32>> = ids.iter().map(|&i| unit(&t, i).unwrap()).collect();
        let mut want: Vec<usize> = Vec::new();
        for _ in 0..20 {
            let score = |i: usize| {
                let dv = want
                    .iter()
                    .map(|&c| 1.0 - dot(&units[i], &units[c]))
                    .fold(2.0f32, f32::min);
                -(sc.mean[i] - 0.5).powi(2) + 0.05 * dv
            };
            let best = (0..n as usize)
                .filter(|i| !want.contains(i))
                .fold(None, |b: Option<usize>, i| match b {
                    Some(j) if score(j) >= score(i) => Some(j),
                    _ => Some(i),
                })
                .unwrap();
            want.push(best);
        }
        drop(t);
        assert_eq!(got, want);
        let st = div.save().unwrap();
        let mut back = DiverseGreedy::new(0.5, 0.1, DiversityMode::Min, 2, emb).unwrap();
        back.load(st).unwrap();
        assert_eq!(back.recent, div.recent);
    }
}
