//! Philox4x32-10, the counter-based generator of Random123 (Salmon et al., SC 2011).
//!
//! A draw is a pure function of (key, counter): the sampler's random number for row `r` at
//! decode step `s` is `philox(counter = [stream_lo, stream_hi, step_lo, step_hi], key = seed)`,
//! so the GPU kernel (`kernels/philox.cuh`) and this CPU twin produce the same bits with no state
//! to carry between steps or to keep in sync across devices.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Ten Philox rounds of `counter` under `key`.
pub fn philox4x32_10(mut ctr: [u32; 4], mut key: [u32; 2]) -> [u32; 4] {
    for round in 0..10 {
        if round > 0 {
            key[0] = key[0].wrapping_add(W0);
            key[1] = key[1].wrapping_add(W1);
        }
        let p0 = u64::from(M0) * u64::from(ctr[0]);
        let p1 = u64::from(M1) * u64::from(ctr[2]);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        ctr = [hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0];
    }
    ctr
}

/// Where one row's draw comes from: the run's seed, the row's stream and the decode step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowRng {
    pub seed: u64,
    pub stream: u64,
    pub step: u64,
}

impl RowRng {
    /// The counter words, in the order the kernel reads them.
    pub fn counter(&self) -> [u32; 4] {
        let (s, t) = (self.stream, self.step);
        [s as u32, (s >> 32) as u32, t as u32, (t >> 32) as u32]
    }

    pub fn key(&self) -> [u32; 2] {
        [self.seed as u32, (self.seed >> 32) as u32]
    }

    /// The row's uniform draw in `[0, 1)`: the top 24 bits of the first output word, so every
    /// value is an exact f32 and 1 is never returned (same as `philox_uniform` in the kernel).
    pub fn uniform(&self) -> f32 {
        (philox4x32_10(self.counter(), self.key())[0] >> 8) as f32 * (1.0 / 16_777_216.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random123's `kat_vectors`, the three `philox4x32 10` lines (counter, key, expected).
    #[test]
    fn matches_the_random123_known_answers() {
        let kat: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
            (
                [0; 4],
                [0; 2],
                [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
            ),
            (
                [u32::MAX; 4],
                [u32::MAX; 2],
                [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
            ),
            (
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0],
                [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
            ),
        ];
        for (ctr, key, want) in kat {
            assert_eq!(philox4x32_10(ctr, key), want, "ctr {ctr:x?} key {key:x?}");
        }
    }

    #[test]
    fn uniforms_are_in_range_and_look_uniform() {
        let n = 100_000u64;
        let mut buckets = [0u32; 10];
        for step in 0..n {
            let u = RowRng {
                seed: 7,
                stream: 3,
                step,
            }
            .uniform();
            assert!((0.0..1.0).contains(&u));
            buckets[(u * 10.0) as usize] += 1;
        }
        // Chi-square with 9 degrees of freedom: 27.9 is the 0.999 quantile.
        let e = n as f64 / 10.0;
        let chi2: f64 = buckets.iter().map(|&c| (c as f64 - e).powi(2) / e).sum();
        assert!(chi2 < 27.9, "chi2 {chi2}, buckets {buckets:?}");
    }

    #[test]
    fn streams_and_seeds_give_different_draws() {
        let base = RowRng {
            seed: 1,
            stream: 0,
            step: 0,
        };
        let other_stream = RowRng { stream: 1, ..base };
        let other_seed = RowRng { seed: 2, ..base };
        let other_step = RowRng { step: 1, ..base };
        let u = base.uniform();
        for r in [other_stream, other_seed, other_step] {
            assert_ne!(r.uniform(), u, "{r:?}");
        }
        assert_eq!(base.uniform(), u, "a draw is a pure function of its inputs");
    }
}
