//! Times GPS select + observe on a large pool:
//! `cargo run --release -p augur-sampler --example gps_timing -- [POOL] [B] [DIM]`.

use augur_sampler::{Method, Outcome, SamplerConfig};
use std::time::Instant;

fn main() {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    let (n, b, d) = (
        *a.first().unwrap_or(&10_000),
        *a.get(1).unwrap_or(&32),
        *a.get(2).unwrap_or(&64),
    );
    let mut s = SamplerConfig::for_method(Method::Gps).build().expect("gps");
    let ids: Vec<u32> = (0..n as u32).collect();
    let emb: Vec<f32> = (0..n * d)
        .map(|i| augur_sampler::random::hash_unit(7, i as u64) - 0.5)
        .collect();
    s.set_embeddings(&ids, &emb).expect("embeddings");
    let (mut ts, mut to) = (0.0, 0.0);
    let steps = 20;
    for step in 0..steps {
        let t0 = Instant::now();
        let sel = s.select(&ids, b).expect("select");
        let t1 = Instant::now();
        let outs: Vec<Outcome> = sel
            .ids
            .iter()
            .map(|&id| Outcome::new(id, (id + step) % 9, 8))
            .collect();
        s.observe(&outs).expect("observe");
        let t2 = Instant::now();
        if step >= 2 {
            ts += (t1 - t0).as_secs_f64();
            to += (t2 - t1).as_secs_f64();
        }
    }
    let k = (steps - 2) as f64;
    let t0 = Instant::now();
    for _ in 0..5 {
        s.predict(&ids, augur_sampler::Quantity::Mean)
            .expect("predict");
    }
    let fwd = t0.elapsed().as_secs_f64() / 5.0;
    println!(
        "of which predictor forward over the pool: {:.2} ms",
        1e3 * fwd
    );
    println!(
        "pool {n}, B {b}, d {d}: select {:.2} ms, observe {:.2} ms (mean of {k} steps after warm-up)",
        1e3 * ts / k,
        1e3 * to / k
    );
}
