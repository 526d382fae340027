//! Parallel "B smallest keys" over a large candidate pool: the O(pool) core of every
//! score-based acquisition. Keys are f32 scores packed with the candidate position into u64,
//! so ties break by position and the result is deterministic on any thread count.

use crate::random::CHUNK;
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

fn pack(score: f32, pos: usize) -> u64 {
    ((ordered_bits(score) as u64) << 32) | pos as u64
}

fn keep_smallest(keys: &mut Vec<u64>, b: usize) {
    if keys.len() > b {
        keys.select_nth_unstable(b - 1);
        keys.truncate(b);
    }
}

/// Positions (into `0..n`) of the `b` smallest `score(pos)`, in ascending score order.
/// Each chunk keeps its own best `b`, then the survivors are merged: O(n) work, parallel.
pub fn smallest_b<F>(n: usize, b: usize, score: F) -> Vec<usize>
where
    F: Fn(usize) -> f32 + Sync,
{
    let b = b.min(n);
    if b == 0 {
        return Vec::new();
    }
    let chunk_best = |start: usize| {
        let end = (start + CHUNK).min(n);
        let mut keys: Vec<u64> = (start..end).map(|p| pack(score(p), p)).collect();
        keep_smallest(&mut keys, b);
        keys
    };
    let mut keys: Vec<u64> = if n <= CHUNK {
        chunk_best(0)
    } else {
        let starts: Vec<usize> = (0..n).step_by(CHUNK).collect();
        starts
            .par_iter()
            .flat_map_iter(|&s| chunk_best(s))
            .collect()
    };
    keep_smallest(&mut keys, b);
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

    #[test]
    fn matches_full_sort() {
        let n = 3 * CHUNK + 17;
        let score = |p: usize| ((p * 7919) % 1000) as f32 / 10.0;
        let got = smallest_b(n, 50, score);
        let mut all: Vec<usize> = (0..n).collect();
        all.sort_by(|&a, &b| score(a).total_cmp(&score(b)).then(a.cmp(&b)));
        assert_eq!(got, all[..50].to_vec());
        assert_eq!(smallest_b(3, 10, score).len(), 3);
    }
}
