//! Batched token sampling with per-row random streams and sampled-token logprobs.
//!
//! candle's `LogitsProcessor` handles one sequence and returns no logprob; GRPO
//! needs both a batch and the logprob of every sampled token.
//!
//! The returned logprob is `log_softmax(raw logits)[token]`: the policy's own
//! distribution at temperature 1, before temperature, penalty and truncation
//! (top-k/top-p/min-p). That is what the training forward recomputes, so the
//! PPO ratio starts at exactly 1 for on-policy data.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::params::SamplingParams;

/// The random stream of sample `sample` of prompt `prompt`: independent of batch
/// composition, so a result never depends on what else was generated with it.
pub fn stream_rng(seed: u64, prompt: u64, sample: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream((prompt << 24) ^ sample);
    rng
}

/// `log(sum(exp(logits)))`, computed stably.
pub fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    max + sum.ln()
}

/// Samples one token from `logits` and returns it with its logprob.
/// `history` holds the ids the repetition penalty applies to.
pub fn sample_token(
    logits: &[f32],
    params: &SamplingParams,
    history: &[u32],
    rng: &mut impl Rng,
) -> (u32, f32) {
    let plain = params.temperature == 1.0
        && params.repetition_penalty == 1.0
        && params.top_k == 0
        && params.top_p >= 1.0
        && params.min_p == 0.0;
    if plain {
        // The common RL setting: one exp pass serves both the draw and the logprob.
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let weights: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
        let total: f32 = weights.iter().sum();
        let token = draw(
            weights
                .iter()
                .copied()
                .enumerate()
                .map(|(i, p)| (i as u32, p)),
            total,
            rng,
        );
        return (token, logits[token as usize] - max - total.ln());
    }
    let penalised;
    let scores: &[f32] = if params.repetition_penalty != 1.0 {
        let mut v = logits.to_vec();
        apply_repetition_penalty(&mut v, history, params.repetition_penalty);
        penalised = v;
        &penalised
    } else {
        logits
    };
    let token = if params.temperature == 0.0 {
        argmax(scores)
    } else {
        choose(scores, params, rng)
    };
    (token, logits[token as usize] - log_sum_exp(logits))
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// CTRL penalty: positive logits are divided by `penalty`, negative ones multiplied.
fn apply_repetition_penalty(logits: &mut [f32], history: &[u32], penalty: f32) {
    let mut seen = history.to_vec();
    seen.sort_unstable();
    seen.dedup();
    for id in seen {
        if let Some(l) = logits.get_mut(id as usize) {
            *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
        }
    }
}

/// Temperature, then top-k, top-p and min-p truncation, then a draw.
fn choose(logits: &[f32], params: &SamplingParams, rng: &mut impl Rng) -> u32 {
    let inv_t = 1.0 / params.temperature;
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let probs: Vec<f32> = logits.iter().map(|&l| ((l - max) * inv_t).exp()).collect();
    let total: f32 = probs.iter().sum();
    let truncating = params.top_k > 0 || params.top_p < 1.0 || params.min_p > 0.0;
    if !truncating {
        return draw(
            probs
                .iter()
                .copied()
                .enumerate()
                .map(|(i, p)| (i as u32, p)),
            total,
            rng,
        );
    }
    let p_max = 1.0 / total; // the top token's normalised probability (its unnormalised p is 1)
    let mut kept = top_candidates(&probs, total, params);
    if params.min_p > 0.0 {
        let floor = params.min_p * p_max * total;
        kept.retain(|&(_, p)| p >= floor);
    }
    let mass: f32 = kept.iter().map(|&(_, p)| p).sum();
    draw(kept.into_iter(), mass, rng)
}

/// The top-k / top-p candidate set in descending probability, without sorting the
/// whole vocabulary: the head is grown until it holds enough mass.
fn top_candidates(probs: &[f32], total: f32, params: &SamplingParams) -> Vec<(u32, f32)> {
    let mut all: Vec<(u32, f32)> = probs
        .iter()
        .copied()
        .enumerate()
        .map(|(i, p)| (i as u32, p))
        .collect();
    let limit = if params.top_k > 0 {
        params.top_k.min(all.len())
    } else {
        all.len()
    };
    let desc = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let mut head = 64.min(limit);
    loop {
        if head < all.len() {
            all.select_nth_unstable_by(head, desc);
        }
        let mut top: Vec<(u32, f32)> = all[..head].to_vec();
        top.sort_unstable_by(desc);
        let target = params.top_p * total;
        let mut cum = 0.0;
        for (n, &(_, p)) in top.iter().enumerate() {
            cum += p;
            if cum >= target {
                top.truncate(n + 1);
                return top;
            }
        }
        if head == limit {
            return top;
        }
        head = (head * 4).min(limit);
    }
}

/// Draws an index with probability proportional to its weight.
fn draw(items: impl Iterator<Item = (u32, f32)> + Clone, total: f32, rng: &mut impl Rng) -> u32 {
    let u = rng.random::<f32>() * total;
    let mut cum = 0.0;
    let mut last = 0;
    for (i, p) in items {
        cum += p;
        last = i;
        if p > 0.0 && u < cum {
            return i;
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: usize, top_p: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
            ..Default::default()
        }
    }

    /// Empirical frequencies over `n` draws from `probs` (given as logits = ln p).
    fn frequencies(probs: &[f32], p: &SamplingParams, n: usize) -> Vec<f64> {
        let mut rng = stream_rng(42, 0, 0);
        let mut counts = vec![0usize; probs.len()];
        for _ in 0..n {
            let logits: Vec<f32> = probs.iter().map(|x| x.ln()).collect();
            counts[sample_token(&logits, p, &[], &mut rng).0 as usize] += 1;
        }
        counts.iter().map(|&c| c as f64 / n as f64).collect()
    }

    const DIST: [f32; 5] = [0.4, 0.3, 0.15, 0.1, 0.05];

    fn assert_close(got: &[f64], want: &[f64]) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 0.01, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn plain_sampling_follows_the_distribution() {
        let f = frequencies(&DIST, &params(1.0, 0, 1.0), 100_000);
        assert_close(&f, &[0.4, 0.3, 0.15, 0.1, 0.05]);
    }

    #[test]
    fn top_k_renormalises_the_k_best() {
        let f = frequencies(&DIST, &params(1.0, 2, 1.0), 100_000);
        assert_close(&f, &[0.4 / 0.7, 0.3 / 0.7, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_p() {
        // 0.4 + 0.3 = 0.7 < 0.75, so the third token is needed.
        let f = frequencies(&DIST, &params(1.0, 0, 0.75), 100_000);
        assert_close(&f, &[0.4 / 0.85, 0.3 / 0.85, 0.15 / 0.85, 0.0, 0.0]);
    }

    #[test]
    fn min_p_drops_tokens_below_a_fraction_of_the_top() {
        // floor = 0.3 * 0.4 = 0.12: tokens with 0.1 and 0.05 go.
        let p = SamplingParams {
            min_p: 0.3,
            ..params(1.0, 0, 1.0)
        };
        let f = frequencies(&DIST, &p, 100_000);
        assert_close(&f, &[0.4 / 0.85, 0.3 / 0.85, 0.15 / 0.85, 0.0, 0.0]);
    }

    #[test]
    fn temperature_sharpens_and_greedy_is_argmax() {
        // T = 0.5 squares the probabilities.
        let sq: Vec<f64> = DIST.iter().map(|&p| (p as f64).powi(2)).collect();
        let z: f64 = sq.iter().sum();
        let f = frequencies(&DIST, &params(0.5, 0, 1.0), 100_000);
        assert_close(&f, &sq.iter().map(|p| p / z).collect::<Vec<_>>());
        let f = frequencies(&DIST, &params(0.0, 0, 1.0), 100);
        assert_eq!(f[0], 1.0);
    }

    #[test]
    fn logprob_is_of_the_raw_distribution() {
        let mut rng = stream_rng(1, 0, 0);
        let logits: Vec<f32> = DIST.iter().map(|x| x.ln() + 3.0).collect();
        let (tok, lp) = sample_token(&logits, &params(0.7, 2, 1.0), &[], &mut rng);
        assert!((lp - DIST[tok as usize].ln()).abs() < 1e-5);
    }

    #[test]
    fn repetition_penalty_discourages_seen_tokens() {
        let logits = vec![2.0, 1.9, -1.0];
        let p = SamplingParams {
            repetition_penalty: 2.0,
            temperature: 0.0,
            ..Default::default()
        };
        let (tok, lp) = sample_token(&logits, &p, &[0], &mut stream_rng(0, 0, 0));
        assert_eq!(tok, 1);
        let lse = log_sum_exp(&[2.0, 1.9, -1.0]);
        assert!((lp - (1.9 - lse)).abs() < 1e-6);
    }
}
