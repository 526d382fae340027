//! select + observe cost with the whole pool as candidates (issue 7 budget: <= 20 ms at 10^6).
//! `cargo bench -p augur-sampler --bench select_observe -- [NUM_PROMPTS] [B] [ITERS]`

use augur_sampler::{Method, Outcome, SamplerConfig};
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(1_000_000);
    let b = args.get(1).copied().unwrap_or(256);
    let iters = args.get(2).copied().unwrap_or(20);
    let k = 8u32;
    println!(
        "candidates = {n}, B = {b}, k = {k}, rayon threads = {}",
        rayon::current_num_threads()
    );
    let pool: Vec<u32> = (0..n as u32).collect();
    for (label, method, seen) in [
        ("uniform", Method::Uniform, false),
        ("mopps (unseen pool)", Method::Mopps, false),
        ("mopps (all seen)", Method::Mopps, true),
        ("dps (unseen pool)", Method::Dps, false),
        ("dps (all seen)", Method::Dps, true),
        ("greso (all seen)", Method::Greso, true),
    ] {
        let mut s = SamplerConfig::for_method(method).build().expect("sampler");
        if seen {
            // Every prompt observed once, so no prior short-cuts apply.
            for chunk in pool.chunks(100_000) {
                let outs: Vec<Outcome> = chunk
                    .iter()
                    .map(|&i| Outcome::new(i, i % (k + 1), k))
                    .collect();
                s.observe(&outs).expect("observe");
            }
        }
        let mut times = Vec::with_capacity(iters);
        let (mut sel_t, mut obs_t) = (0.0, 0.0);
        for it in 0..iters {
            let t0 = Instant::now();
            let sel = s.select(&pool, b).expect("select");
            let t1 = Instant::now();
            let outs: Vec<Outcome> = sel
                .ids
                .iter()
                .map(|&i| Outcome::new(i, (i as usize + it) as u32 % (k + 1), k))
                .collect();
            s.observe(&outs).expect("observe");
            let t2 = Instant::now();
            sel_t += (t1 - t0).as_secs_f64();
            obs_t += (t2 - t1).as_secs_f64();
            times.push((t2 - t0).as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{label:<22} select+observe: median {:6.2} ms  min {:6.2} ms  max {:6.2} ms  (select {:.2} ms, observe {:.2} ms mean)",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1],
            sel_t * 1e3 / iters as f64,
            obs_t * 1e3 / iters as f64
        );
    }
}
