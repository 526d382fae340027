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
    #[inline]
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    #[inline]
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
#[inline]
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

/// Layer tables of the 256-layer ziggurat for the standard normal (Marsaglia & Tsang 2000,
/// "The Ziggurat Method for Generating Random Variables", J. Stat. Softw. 5(8), `zigset`,
/// with their 256-layer constants).
/// Layer `i` accepts a signed 32-bit draw `j` at once when `|j| < k[i]`, returning `j·w[i]`.
struct Ziggurat {
    k: [u32; ZIG_LAYERS],
    w: [f32; ZIG_LAYERS],
    f: [f32; ZIG_LAYERS],
}

/// Right edge of the base layer's rectangle, and the area of every layer.
const ZIG_R: f64 = 3.654_152_885_361_009;
const ZIG_V: f64 = 4.928_673_233_99e-3;
const ZIG_LAYERS: usize = 256;

/// The constant tables of the Beta sampler, built once: one lazy-initialisation check per
/// Beta draw instead of one per table access.
struct Tables {
    zig: Ziggurat,
    gamma: [GammaConstants; GAMMA_TABLE],
}

#[inline]
fn tables() -> &'static Tables {
    static TABLES: std::sync::OnceLock<Tables> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| Tables {
        zig: build_ziggurat(),
        gamma: std::array::from_fn(|i| GammaConstants::compute(i as f32)),
    })
}

fn build_ziggurat() -> Ziggurat {
    {
        let m1 = 2_147_483_648.0f64;
        let (mut dn, mut tn) = (ZIG_R, ZIG_R);
        let q = ZIG_V / (-0.5 * dn * dn).exp();
        let mut z = Ziggurat {
            k: [0; ZIG_LAYERS],
            w: [0.0; ZIG_LAYERS],
            f: [0.0; ZIG_LAYERS],
        };
        z.k[0] = (dn / q * m1) as u32;
        z.w[0] = (q / m1) as f32;
        z.w[ZIG_LAYERS - 1] = (dn / m1) as f32;
        z.f[0] = 1.0;
        z.f[ZIG_LAYERS - 1] = (-0.5 * dn * dn).exp() as f32;
        for i in (1..ZIG_LAYERS - 1).rev() {
            dn = (-2.0 * (ZIG_V / dn + (-0.5 * dn * dn).exp()).ln()).sqrt();
            z.k[i + 1] = (dn / tn * m1) as u32;
            tn = dn;
            z.f[i] = (-0.5 * dn * dn).exp() as f32;
            z.w[i] = (dn / m1) as f32;
        }
        z
    }
}

/// 24-bit uniform in [0, 1) from bits 8..32 of `r`, the bits [`normal_from`] does not read.
#[inline]
fn unit_from(r: u64) -> f32 {
    ((r >> 8) & 0xFF_FFFF) as f32 * (1.0 / (1u64 << 24) as f32)
}

/// Standard normal by the ziggurat above, from one 64-bit draw `r` in ~99.5% of calls: the layer
/// is bits 0..7, the signed value bits 32..64. (Separate bits for the two, unlike the original
/// `RNOR`, whose layer and value shared bits; Doornik 2005.) The rest of `r` is left for the
/// caller. `rand_distr`'s normal spends a whole f64 draw (and converts) where this needs 39
/// bits, and Thompson sampling at 10^6 prompts makes 2·10^6 of them per select.
#[inline(always)]
fn normal_from(z: &Ziggurat, r: u64, rng: &mut SplitMix64) -> f32 {
    let j = (r >> 32) as u32 as i32;
    let i = (r & 255) as usize;
    if j.unsigned_abs() < z.k[i] {
        return j as f32 * z.w[i];
    }
    let (x, next) = normal_rejected(z, r, rng.clone());
    *rng = next;
    x
}

/// The rest of [`normal_from`] after its first draw fell outside its layer's rectangle:
/// Marsaglia & Tsang's `nfix` (wedge test, or the tail beyond R), drawing afresh from `rng`.
#[cold]
#[inline(never)]
fn normal_rejected(z: &Ziggurat, mut r: u64, mut rng: SplitMix64) -> (f32, SplitMix64) {
    loop {
        let j = (r >> 32) as u32 as i32;
        let i = (r & 255) as usize;
        let x = j as f32 * z.w[i];
        if j.unsigned_abs() < z.k[i] {
            return (x, rng);
        }
        if i == 0 {
            // The tail beyond R, by Marsaglia's exponential method.
            let (mut x, mut y) = (1.0f64, 0.0f64);
            while y + y < x * x {
                x = -open01(&mut rng).ln() / ZIG_R;
                y = -open01(&mut rng).ln();
            }
            let t = (ZIG_R + x) as f32;
            return (if j > 0 { t } else { -t }, rng);
        }
        let u = unit_from(rng.next_u64());
        if z.f[i] + u * (z.f[i - 1] - z.f[i]) < (-0.5 * x * x).exp() {
            return (x, rng);
        }
        r = rng.next_u64();
    }
}

/// Uniform in (0, 1), never 0, for logarithms.
fn open01<R: RngCore + ?Sized>(rng: &mut R) -> f64 {
    ((rng.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// Gamma(shape ≥ 1) in single precision: the Thompson-sampling hot path. Marsaglia & Tsang's
/// method (as [`sample_gamma`]) with a tighter squeeze (see [`GammaConstants`]); the normal
/// and the acceptance uniform come from one 64-bit draw ([`normal_from`]). The first try and
/// its squeeze are inlined so that consecutive prompts' draws overlap in the CPU; the rest of
/// the method is [`gamma_rejected`].
#[inline(always)]
fn sample_gamma_f32(rng: &mut SplitMix64, tables: &Tables, shape: f32) -> f32 {
    let g = GammaConstants::of(&tables.gamma, shape);
    let r = rng.next_u64();
    let x = normal_from(&tables.zig, r, rng);
    let u = unit_from(r);
    let t = g.c * x;
    if t > -1.0 && g.squeeze(x, t, u) {
        let v = 1.0 + t;
        return g.d * (v * v * v);
    }
    let (y, next) = gamma_rejected(rng.clone(), &tables.zig, g, x, u);
    *rng = next;
    y
}

/// Marsaglia–Tsang's constants for one shape a: d = a − 1/3, c = 1/(3√d), and `q` = c²/12
/// for the squeeze.
///
/// The method accepts a try (x, u) with t = c·x > −1 when ln u < x²/2 + d(1 − v + ln v),
/// v = (1+t)³. Writing the right side as d·h(t) with h(t) = 1.5t² − 3t − t³ + 3 ln(1+t), one
/// has h(0) = 0 and h'(t) = −3t³/(1+t), so h(t) ≥ −0.75t⁴ for t ≥ 0 and
/// h(t) ≥ −0.75t⁴/(1+t) for −1 < t < 0; with d·t⁴ = c²x⁴/9 the right side is at least
/// −q·x⁴/(1 + min(t, 0)). Since ln u ≤ u − 1, `u − 1 < −q·x⁴/(1 + min(t, 0))` accepts without
/// a logarithm. It sends about c²/4 of the tries to the log test (4% at a = 1, under 1% from
/// a = 5), where the paper's fixed squeeze u < 1 − 0.0331x⁴ sends 10% at every shape.
#[derive(Debug, Clone, Copy)]
struct GammaConstants {
    d: f32,
    c: f32,
    q: f32,
}

/// Whole shapes below this have their constants in a table.
const GAMMA_TABLE: usize = 1024;

impl GammaConstants {
    /// Under the default prior with λ = 1 every Beta parameter is a whole number of successes
    /// or failures plus one, so a table of whole shapes saves the square root and the division
    /// (the slowest instructions of a draw) for nearly every prompt; other shapes compute them.
    #[inline(always)]
    fn of(table: &[GammaConstants; GAMMA_TABLE], a: f32) -> Self {
        let whole = a as usize;
        if whole as f32 == a && whole < GAMMA_TABLE {
            return table[whole];
        }
        GammaConstants::compute(a)
    }

    #[inline]
    fn compute(a: f32) -> Self {
        let d = a - 1.0 / 3.0;
        let c = 1.0 / (3.0 * d.sqrt());
        GammaConstants {
            d,
            c,
            q: c * c / 12.0,
        }
    }

    /// The log-free acceptance test above, for a try with t = c·x > −1 (no division: both
    /// sides are multiplied by 1 + min(t, 0) > 0).
    #[inline(always)]
    fn squeeze(self, x: f32, t: f32, u: f32) -> bool {
        let w = 1.0 + t.min(0.0);
        let x2 = x * x;
        (u - 1.0) * w < -self.q * x2 * x2
    }
}

/// Marsaglia–Tsang from the log test of the try `(x, u)` onwards (a try with c·x ≤ −1 is
/// dropped). The log test runs in f64 to avoid cancellation for large shapes.
#[cold]
#[inline(never)]
fn gamma_rejected(
    mut rng: SplitMix64,
    z: &Ziggurat,
    g: GammaConstants,
    mut x: f32,
    mut u: f32,
) -> (f32, SplitMix64) {
    loop {
        let t = g.c * x;
        if t > -1.0 {
            let v = 1.0 + t;
            let v = v * v * v;
            if g.squeeze(x, t, u) {
                return (g.d * v, rng);
            }
            let (d64, v64, x64) = (g.d as f64, v as f64, x as f64);
            if (u as f64).ln() < 0.5 * x64 * x64 + d64 * (1.0 - v64 + v64.ln()) {
                return (g.d * v, rng);
            }
        }
        let r = rng.next_u64();
        x = normal_from(z, r, &mut rng);
        u = unit_from(r);
    }
}

/// Beta(a, b) as X/(X+Y) with X ~ Gamma(a), Y ~ Gamma(b); Beta(1,1) (an unseen prompt under the
/// default prior) short-cuts to one uniform draw. Takes the concrete generator so that its
/// state stays in a register through the inlined fast path (the rare paths take and return it
/// by value).
#[inline]
pub fn sample_beta(rng: &mut SplitMix64, a: f32, b: f32) -> f32 {
    if a == 1.0 && b == 1.0 {
        return rng.random::<f32>();
    }
    if a >= 1.0 && b >= 1.0 {
        let t = tables();
        let x = sample_gamma_f32(rng, t, a);
        let y = sample_gamma_f32(rng, t, b);
        return x / (x + y);
    }
    let (z, next) = sample_beta_small_shapes(rng.clone(), a, b);
    *rng = next;
    z
}

/// Beta(a, b) with a shape below 1, in f64, where tiny Gamma draws do not underflow.
#[inline(never)]
fn sample_beta_small_shapes(mut rng: SplitMix64, a: f32, b: f32) -> (f32, SplitMix64) {
    let (x, y) = (
        sample_gamma(&mut rng, a as f64),
        sample_gamma(&mut rng, b as f64),
    );
    let s = x + y;
    let z = if s <= 0.0 { 0.5 } else { (x / s) as f32 };
    (z, rng)
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

    /// Kolmogorov–Smirnov distance between the sample `xs` and the CDF `cdf`.
    fn ks_distance(mut xs: Vec<f64>, cdf: impl Fn(f64) -> f64) -> f64 {
        xs.sort_by(f64::total_cmp);
        let n = xs.len() as f64;
        xs.iter()
            .enumerate()
            .map(|(i, &x)| {
                let f = cdf(x);
                (f - i as f64 / n).max((i + 1) as f64 / n - f)
            })
            .fold(0.0, f64::max)
    }

    /// KS critical value at significance 0.001 for `n` draws.
    fn ks_critical(n: usize) -> f64 {
        1.949 / (n as f64).sqrt()
    }

    /// Beta(a, b) CDF for integer a, b: I_x(a, b) = P(Binomial(a+b−1, x) ≥ a)
    /// = 1 − Σ_{j<a} C(n, j) x^j (1−x)^(n−j).
    fn beta_cdf_integer(a: u32, b: u32) -> impl Fn(f64) -> f64 {
        let n = a + b - 1;
        let mut ln_fact = vec![0.0f64; n as usize + 1];
        for j in 1..=n as usize {
            ln_fact[j] = ln_fact[j - 1] + (j as f64).ln();
        }
        move |x: f64| {
            if x <= 0.0 {
                return 0.0;
            }
            if x >= 1.0 {
                return 1.0;
            }
            let below: f64 = (0..a)
                .map(|j| {
                    let ln_c =
                        ln_fact[n as usize] - ln_fact[j as usize] - ln_fact[(n - j) as usize];
                    (ln_c + j as f64 * x.ln() + (n - j) as f64 * (1.0 - x).ln()).exp()
                })
                .sum();
            1.0 - below
        }
    }

    /// Beta(a, b) CDF for a, b > 1 by integrating x^(a−1)(1−x)^(b−1) with the trapezoid rule
    /// on a fine grid and normalising by the total (no Gamma function needed). The density is
    /// taken relative to its mode, so large shapes do not underflow.
    fn beta_cdf_numeric(a: f64, b: f64) -> impl Fn(f64) -> f64 {
        assert!(a > 1.0 && b > 1.0);
        let m = 200_000;
        let ln_dens = |x: f64| (a - 1.0) * x.ln() + (b - 1.0) * (1.0 - x).ln();
        let peak = ln_dens((a - 1.0) / (a + b - 2.0));
        let dens = |x: f64| {
            if x <= 0.0 || x >= 1.0 {
                0.0
            } else {
                (ln_dens(x) - peak).exp()
            }
        };
        let mut cum = vec![0.0f64; m + 1];
        for i in 1..=m {
            let (x0, x1) = ((i - 1) as f64 / m as f64, i as f64 / m as f64);
            cum[i] = cum[i - 1] + 0.5 * (dens(x0) + dens(x1)) / m as f64;
        }
        let total = cum[m];
        move |x: f64| {
            let t = (x.clamp(0.0, 1.0) * m as f64).min(m as f64 - 1e-9);
            let i = t as usize;
            (cum[i] + (t - i as f64) * (cum[i + 1] - cum[i])) / total
        }
    }

    /// Gamma(a, 1) CDF for integer a: 1 − e^{−x} Σ_{j<a} x^j / j!.
    fn gamma_cdf_integer(a: u32, x: f64) -> f64 {
        let (mut term, mut sum) = (1.0f64, 0.0f64);
        for j in 0..a {
            if j > 0 {
                term *= x / j as f64;
            }
            sum += term;
        }
        1.0 - (-x).exp() * sum
    }

    /// Standard normal CDF through erfc (Numerical Recipes `erfcc`, relative error < 1.2e-7).
    fn normal_cdf(x: f64) -> f64 {
        let z = x.abs() / std::f64::consts::SQRT_2;
        let t = 1.0 / (1.0 + 0.5 * z);
        let poly = -z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77))))))));
        let erfc = t * poly.exp();
        if x >= 0.0 {
            1.0 - 0.5 * erfc
        } else {
            0.5 * erfc
        }
    }

    fn betas(seed: u64, a: f32, b: f32, n: usize) -> Vec<f64> {
        let mut rng = chunk_rng(seed, 3);
        (0..n).map(|_| sample_beta(&mut rng, a, b) as f64).collect()
    }

    /// The Thompson draws are exact Beta samples: KS against the Beta CDF for the shapes MoPPS
    /// meets (the uniform prior, integer counts under λ = 1, large counts, non-integer counts
    /// under λ < 1, and shapes below 1 from a Jeffreys-like prior).
    #[test]
    fn beta_draws_pass_kolmogorov_smirnov() {
        let n = 50_000;
        let crit = ks_critical(n);
        let integer = [
            (1u32, 1u32),
            (2, 7),
            (9, 1),
            (1, 9),
            (5, 5),
            (300, 40),
            (3, 1000),
        ];
        for (i, &(a, b)) in integer.iter().enumerate() {
            let xs = betas(i as u64, a as f32, b as f32, n);
            let d = ks_distance(xs, beta_cdf_integer(a, b));
            assert!(d < crit, "Beta({a},{b}): KS D = {d:.5} >= {crit:.5}");
        }
        for (i, &(a, b)) in [
            (2.5f64, 3.5f64),
            (1.5, 40.25),
            (17.75, 6.5),
            (1500.5, 2600.25),
        ]
        .iter()
        .enumerate()
        {
            let xs = betas(100 + i as u64, a as f32, b as f32, n);
            let d = ks_distance(xs, beta_cdf_numeric(a, b));
            assert!(d < crit, "Beta({a},{b}): KS D = {d:.5} >= {crit:.5}");
        }
        type Cdf = fn(f64) -> f64;
        let closed: [(f32, f32, Cdf); 3] = [
            (0.5, 0.5, |x| 2.0 / std::f64::consts::PI * x.sqrt().asin()),
            (0.3, 1.0, |x| x.powf(0.3)),
            (1.0, 0.7, |x| 1.0 - (1.0 - x).powf(0.7)),
        ];
        for (i, &(a, b, cdf)) in closed.iter().enumerate() {
            let d = ks_distance(betas(200 + i as u64, a, b, n), cdf);
            assert!(d < crit, "Beta({a},{b}): KS D = {d:.5} >= {crit:.5}");
        }
        // The test has power: draws of a neighbouring Beta are rejected.
        let d = ks_distance(betas(300, 2.0, 5.0, n), beta_cdf_integer(2, 6));
        assert!(
            d > 3.0 * crit,
            "KS cannot tell Beta(2,5) from Beta(2,6): {d}"
        );
    }

    #[test]
    fn gamma_draws_pass_kolmogorov_smirnov() {
        let n = 50_000;
        for (i, &a) in [1u32, 2, 8, 120].iter().enumerate() {
            let mut rng = chunk_rng(400 + i as u64, 0);
            let xs: Vec<f64> = (0..n)
                .map(|_| sample_gamma_f32(&mut rng, tables(), a as f32) as f64)
                .collect();
            let d = ks_distance(xs, |x| gamma_cdf_integer(a, x));
            assert!(d < ks_critical(n), "Gamma({a}): KS D = {d:.5}");
        }
    }

    /// The ziggurat normal: KS against Φ over the body, and the two tails (the wedge and the
    /// base strip's tail are rare paths KS barely sees) at their expected rates.
    #[test]
    fn ziggurat_normal_is_standard_normal() {
        let n = 2_000_000;
        let mut rng = chunk_rng(500, 0);
        let xs: Vec<f64> = (0..n)
            .map(|_| {
                let r = rng.next_u64();
                normal_from(&tables().zig, r, &mut rng) as f64
            })
            .collect();
        for (cut, label) in [(2.0, "2"), (3.0, "3"), (ZIG_R, "R"), (4.0, "4")] {
            let p = 2.0 * (1.0 - normal_cdf(cut));
            let expect = p * n as f64;
            let got = xs.iter().filter(|x| x.abs() > cut).count() as f64;
            let sd = (expect * (1.0 - p)).sqrt();
            assert!(
                (got - expect).abs() < 5.0 * sd,
                "|x| > {label}: {got} vs {expect:.1} ± {sd:.1}"
            );
        }
        let pos = xs.iter().filter(|&&x| x > ZIG_R).count() as f64;
        let neg = xs.iter().filter(|&&x| x < -ZIG_R).count() as f64;
        assert!(
            (pos - neg).abs() < 5.0 * (pos + neg).sqrt(),
            "tails {pos} vs {neg}"
        );
        let d = ks_distance(xs, normal_cdf);
        assert!(d < ks_critical(n), "normal: KS D = {d:.5}");
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
