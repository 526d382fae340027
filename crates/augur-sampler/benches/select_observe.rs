//! select + observe cost with the whole pool as candidates (issue 7 budget: <= 20 ms at 10^6).
//! `cargo bench -p augur-sampler --bench select_observe -- [NUM_PROMPTS] [B] [ITERS]`

use augur_sampler::{Method, Outcome, SamplerConfig};
use std::time::Instant;

/// Process CPU time (user + system, all threads) in ms from /proc, or NaN where unavailable.
/// Reported next to wall time because the machine is shared: CPU time is what the sampler
/// itself costs, wall time also counts waiting for a core.
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|x| x.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name; 100 ticks/s.
    (ticks(11) + ticks(12)) * 10.0
}

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
        let cpu0 = cpu_ms();
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
        let cpu = (cpu_ms() - cpu0) / iters as f64;
        times.sort_by(f64::total_cmp);
        println!(
            "{label:<22} select+observe: median {:6.2} ms  min {:6.2} ms  max {:6.2} ms  (select {:.2} ms, observe {:.2} ms mean; CPU {:.1} ms/step all threads)",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1],
            sel_t * 1e3 / iters as f64,
            obs_t * 1e3 / iters as f64,
            cpu
        );
    }
}
