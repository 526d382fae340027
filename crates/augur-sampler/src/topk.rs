//! Parallel "B smallest keys" over a large candidate pool: the O(pool) core of every
//! score-based acquisition.
//!
//! Ties are broken by a random key hashed from the select's seed and the candidate's *prompt
//! id*, never by its position: a pool sent as ids 0..N-1 in order and the same pool shuffled
//! get the same selection, and prompts whose scores tie (e.g. DPS prompts that all decayed to
//! the prior) are drawn uniformly instead of always the lowest ids. Keys pack the f32 score,
//! the 64-bit tie key and the position into a u128; keys are distinct, so "the b smallest" is
//! one set whatever order the pool is scanned in, and the result is the same on any thread
//! count.

use crate::random::{splitmix64, CHUNK};
use rayon::prelude::*;

/// Maps an f32 to a u32 whose unsigned order matches the float order (NaN sorts last).
pub fn ordered_bits(x: f32) -> u32 {
    let x = if x.is_nan() { f32::INFINITY } else { x };
    let b = x.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// Random tie-breaking key of prompt `id` for the select whose tie seed is `seed`: element
/// `id` of the SplitMix64 stream started at `seed` (one finaliser per candidate).
pub fn tie_key(seed: u64, id: u32) -> u64 {
    splitmix64(seed.wrapping_add((id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
}

fn pack(score_bits: u32, tie: u64, pos: usize) -> u128 {
    ((score_bits as u128) << 96) | ((tie as u128) << 32) | pos as u128
}

/// The `b` smallest keys offered so far, kept in a buffer of at most `2b` that is cut back to
/// `b` when full. After the first cut every key above the current b-th smallest is rejected
/// before it is hashed or stored, so a scan costs about one comparison per candidate: for
/// scores in random order only ~b·ln(n/b) candidates are ever stored.
struct Best {
    keys: Vec<u128>,
    b: usize,
    /// The b-th smallest key kept so far (u128::MAX until b keys were seen).
    limit: u128,
}

impl Best {
    fn new(b: usize) -> Self {
        Best {
            keys: Vec::with_capacity(2 * b),
            b,
            limit: u128::MAX,
        }
    }

    /// Offers position `pos` (prompt `id`) with score bits `bits`; `seed` seeds its tie key.
    #[inline]
    fn offer(&mut self, bits: u32, seed: u64, id: u32, pos: usize) {
        if bits > (self.limit >> 96) as u32 {
            return;
        }
        let key = pack(bits, tie_key(seed, id), pos);
        if key > self.limit {
            return;
        }
        self.keys.push(key);
        if self.keys.len() >= 2 * self.b {
            self.cut();
        }
    }

    /// Keeps the `b` smallest keys and lowers the limit to the largest of them.
    fn cut(&mut self) {
        if self.keys.len() > self.b {
            self.keys.select_nth_unstable(self.b - 1);
            self.keys.truncate(self.b);
            self.limit = self.keys[self.b - 1];
        }
    }

    fn merge(mut self, other: Best) -> Best {
        self.keys.extend(other.keys);
        self.cut();
        self
    }
}

/// Positions (into `candidates`) of the `b` smallest `score(pos)`, in ascending score order;
/// equal scores are ordered by [`tie_key`]`(tie_seed, candidates[pos])`. Each parallel task
/// scans whole [`CHUNK`]s into its own [`Best`], then the tasks' survivors are merged: O(n)
/// work with no per-candidate allocation.
pub fn smallest_b<F>(candidates: &[u32], b: usize, tie_seed: u64, score: F) -> Vec<usize>
where
    F: Fn(usize) -> f32 + Sync,
{
    let n = candidates.len();
    assert!(n as u64 <= u32::MAX as u64, "candidate pool over 2^32");
    let b = b.min(n);
    if b == 0 {
        return Vec::new();
    }
    let scan = |mut best: Best, chunk: usize| {
        let start = chunk * CHUNK;
        let end = (start + CHUNK).min(n);
        for (pos, &id) in candidates[start..end].iter().enumerate() {
            let pos = start + pos;
            best.offer(ordered_bits(score(pos)), tie_seed, id, pos);
        }
        best
    };
    let chunks = n.div_ceil(CHUNK);
    let mut best = if chunks == 1 {
        scan(Best::new(b), 0)
    } else {
        (0..chunks)
            .into_par_iter()
            .fold(|| Best::new(b), scan)
            .reduce(|| Best::new(b), Best::merge)
    };
    best.cut();
    let mut keys = best.keys;
    keys.sort_unstable();
    keys.into_iter()
        .map(|k| (k & 0xFFFF_FFFF) as usize)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_preserving_bits() {
        let xs = [-3.0f32, -0.5, -0.0, 0.0, 1e-9, 2.0, f32::INFINITY];
        for w in xs.windows(2) {
            assert!(ordered_bits(w[0]) <= ordered_bits(w[1]), "{w:?}");
        }
        assert_eq!(ordered_bits(f32::NAN), ordered_bits(f32::INFINITY));
    }

    /// Against a naive full sort by (score, tie key), across several chunks.
    #[test]
    fn matches_full_sort() {
        let n = 3 * CHUNK + 17;
        let ids: Vec<u32> = (0..n as u32).map(|i| i * 3 + 1).collect();
        let score = |p: usize| ((p * 7919) % 1000) as f32 / 10.0;
        let got = smallest_b(&ids, 50, 9, score);
        let mut all: Vec<usize> = (0..n).collect();
        all.sort_by(|&a, &b| {
            score(a)
                .total_cmp(&score(b))
                .then(tie_key(9, ids[a]).cmp(&tie_key(9, ids[b])))
        });
        assert_eq!(got, all[..50].to_vec());
        assert_eq!(smallest_b(&ids[..3], 10, 9, score).len(), 3);
    }

    /// The same selection on 1, 2 and 5 threads (the tasks' survivors merge in a different
    /// order each time), with scores that tie in blocks so tie keys decide part of it.
    #[test]
    fn same_result_on_any_thread_count() {
        let n = 7 * CHUNK + 123;
        let ids: Vec<u32> = (0..n as u32)
            .map(|i| i.wrapping_mul(2_654_435_761) >> 8)
            .collect();
        let score = |p: usize| (splitmix64(p as u64) % 50) as f32;
        let on = |threads: usize, b: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| smallest_b(&ids, b, 5, score))
        };
        let mut naive: Vec<usize> = (0..n).collect();
        naive.sort_by(|&a, &b| {
            score(a)
                .total_cmp(&score(b))
                .then(tie_key(5, ids[a]).cmp(&tie_key(5, ids[b])))
                .then(a.cmp(&b))
        });
        for b in [1, 256, 3 * CHUNK] {
            let one = on(1, b);
            assert_eq!(one, naive[..b].to_vec(), "b = {b}");
            assert_eq!(one, on(2, b), "b = {b}");
            assert_eq!(one, on(5, b), "b = {b}");
        }
    }

    /// All scores equal: the chosen *ids* do not depend on the pool's order, and over many
    /// seeds every id is chosen about equally often (positions 0..b are not favoured).
    #[test]
    fn ties_are_order_independent_and_uniform() {
        let n = 2 * CHUNK + 100;
        let ids: Vec<u32> = (0..n as u32).collect();
        let mut rev = ids.clone();
        rev.reverse();
        let mut counts = vec![0u32; n];
        let (b, seeds) = (64, 400u64);
        for seed in 0..seeds {
            let pick = |pool: &[u32]| {
                let mut v: Vec<u32> = smallest_b(pool, b, seed, |_| 0.5)
                    .into_iter()
                    .map(|p| pool[p])
                    .collect();
                v.sort_unstable();
                v
            };
            let a = pick(&ids);
            assert_eq!(a, pick(&rev), "seed {seed}");
            for id in a {
                counts[id as usize] += 1;
            }
        }
        // Expected count per id: seeds·b/n ≈ 1.55; the first b ids would get 400 under
        // position tie-breaking.
        let low: u32 = counts[..b].iter().sum();
        let expect = (seeds as usize * b * b / n) as f64;
        assert!(
            (low as f64) < 3.0 * expect + 20.0,
            "low ids favoured: {low} vs {expect}"
        );
        let never = counts.iter().filter(|&&c| c == 0).count();
        // P(never chosen) = (1 − b/n)^seeds ≈ e^-1.55 ≈ 0.21.
        assert!(never < n * 3 / 10, "{never} of {n} ids never chosen");
    }
}
