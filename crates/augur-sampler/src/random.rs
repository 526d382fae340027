//! Deterministic randomness: per-chunk RNG streams (so parallel work gives the same numbers
//! on any thread count) and a fast Beta sampler for Thompson sampling over 10^6 prompts.

use rand::{Rng, RngCore};
use rand_distr::{Distribution, StandardNormal};

/// Work is split into chunks of this many candidates; each chunk draws from its own stream.
/// Fixed (not derived from the thread count) so results never depend on the machine.
pub const CHUNK: usize = 8192;

/// Runs `work(chunk index, ids, out)` over fixed [`CHUNK`]-sized slices of `ids`/`out`,
/// in parallel when there is more than one chunk: the same chunking (and so the same
/// per-chunk RNG streams) on every machine.
pub fn for_each_chunk<F>(ids: &[u32], out: &mut [f32], work: F)
where
    F: Fn(usize, &[u32], &mut [f32]) + Sync,
{
    use rayon::prelude::*;
    if ids.len() <= CHUNK {
        work(0, ids, out);
    } else {
        ids.par_chunks(CHUNK)
            .zip(out.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(c, (ids, out))| work(c, ids, out));
    }
}

/// RNG for chunk `chunk` of a step whose seed is `seed`. A SplitMix64 stream: about 4x
/// cheaper per draw than ChaCha8, which matters for 10^6 Thompson draws per step; statistical
/// quality is ample for sampling posteriors (it is not a cryptographic generator).
pub fn chunk_rng(seed: u64, chunk: usize) -> SplitMix64 {
    SplitMix64(splitmix64(seed ^ splitmix64(chunk as u64 ^ 0xC4A1_1D5E)))
}

/// SplitMix64 generator (Steele, Lea & Flood 2014): one add and a finaliser per draw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64(pub u64);

impl RngCore for SplitMix64 {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// SplitMix64 finaliser: a cheap, stateless hash used for random tie-breaking keys.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Uniform value in [0, 1) from a hash of (seed, index); parallel-safe randomness without state.
pub fn hash_unit(seed: u64, index: u64) -> f32 {
    let h = splitmix64(seed ^ splitmix64(index));
    (h >> 40) as f32 / (1u64 << 24) as f32
}

/// Gamma(shape, 1) by Marsaglia & Tsang (2000); shapes below 1 use the U^(1/a) boost.
/// About one normal and one uniform per draw, which is what makes 10^6 Thompson samples cheap.
pub fn sample_gamma<R: Rng + ?Sized>(rng: &mut R, shape: f64) -> f64 {
    if shape < 1.0 {
        let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        return sample_gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x: f64 = StandardNormal.sample(rng);
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u: f64 = rng.random::<f64>();
        let x2 = x * x;
        if u < 1.0 - 0.0331 * x2 * x2 {
            return d * v;
        }
        if u.ln() < 0.5 * x2 + d * (1.0 - v + v.ln()) {
            return d * v;
        }
    }
}

/// Gamma(shape ≥ 1) in single precision: the Thompson-sampling hot path. Same Marsaglia–Tsang
/// method as [`sample_gamma`]; the squeeze test (taken ~98% of the time) runs in f32, the rare
/// log test in f64 to avoid cancellation for large shapes.
fn sample_gamma_f32<R: Rng + ?Sized>(rng: &mut R, shape: f32) -> f32 {
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (3.0 * d.sqrt());
    loop {
        let x: f32 = StandardNormal.sample(rng);
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u: f32 = rng.random::<f32>();
        let x2 = x * x;
        if u < 1.0 - 0.0331 * x2 * x2 {
            return d * v;
        }
        let (d64, v64) = (d as f64, v as f64);
        if (u as f64).ln() < 0.5 * x2 as f64 + d64 * (1.0 - v64 + v64.ln()) {
            return d * v;
        }
    }
}

/// Beta(a, b) as X/(X+Y) with X ~ Gamma(a), Y ~ Gamma(b); Beta(1,1) (an unseen prompt under the
/// default prior) short-cuts to one uniform draw.
pub fn sample_beta<R: Rng + ?Sized>(rng: &mut R, a: f32, b: f32) -> f32 {
    if a == 1.0 && b == 1.0 {
        return rng.random::<f32>();
    }
    let (x, y) = if a >= 1.0 && b >= 1.0 {
        (
            sample_gamma_f32(rng, a) as f64,
            sample_gamma_f32(rng, b) as f64,
        )
    } else {
        (sample_gamma(rng, a as f64), sample_gamma(rng, b as f64))
    };
    let s = x + y;
    if s <= 0.0 {
        return 0.5;
    }
    (x / s) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beta_sampler_matches_moments() {
        let mut rng = chunk_rng(7, 0);
        for &(a, b) in &[(2.0f32, 5.0f32), (0.5, 0.5), (30.0, 3.0), (1.0, 1.0)] {
            let n = 40_000;
            let xs: Vec<f64> = (0..n).map(|_| sample_beta(&mut rng, a, b) as f64).collect();
            let mean = xs.iter().sum::<f64>() / n as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
            let (a, b) = (a as f64, b as f64);
            let m = a / (a + b);
            let v = a * b / ((a + b).powi(2) * (a + b + 1.0));
            assert!((mean - m).abs() < 0.01, "mean {mean} vs {m} for ({a},{b})");
            assert!(
                (var - v).abs() < 0.1 * v + 1e-3,
                "var {var} vs {v} for ({a},{b})"
            );
            assert!(xs.iter().all(|x| (0.0..=1.0).contains(x)));
        }
    }

    #[test]
    fn chunk_streams_are_deterministic_and_distinct() {
        let a: u64 = chunk_rng(1, 0).random();
        let b: u64 = chunk_rng(1, 0).random();
        let c: u64 = chunk_rng(1, 1).random();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let u = hash_unit(3, 4);
        assert!((0.0..1.0).contains(&u));
        assert_eq!(u, hash_unit(3, 4));
    }
}
