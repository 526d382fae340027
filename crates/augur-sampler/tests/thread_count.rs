//! A seeded sampler selects the same prompts whatever the number of threads: the Thompson
//! draws come from per-chunk streams and the top-B merge is exact, so neither depends on how
//! rayon splits the pool.

use augur_sampler::{Method, Outcome, SamplerConfig};

/// Five select/observe rounds of `method` over 100k prompts (13 chunks) on `threads` threads.
fn selections(method: Method, threads: usize) -> Vec<Vec<u32>> {
    let pool: Vec<u32> = (0..100_000).collect();
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(|| {
            let mut s = SamplerConfig::for_method(method).build().unwrap();
            // Half the pool seen once, so posteriors differ (the rest keep the prior).
            let seen: Vec<Outcome> = (0..50_000).map(|i| Outcome::new(i, i % 9, 8)).collect();
            s.observe(&seen).unwrap();
            (0..5)
                .map(|step| {
                    let sel = s.select(&pool, 256).unwrap();
                    let outs: Vec<Outcome> = sel
                        .ids
                        .iter()
                        .map(|&i| Outcome::new(i, (i + step) % 9, 8))
                        .collect();
                    s.observe(&outs).unwrap();
                    sel.ids
                })
                .collect()
        })
}

#[test]
fn mopps_and_dps_select_the_same_on_1_2_and_3_threads() {
    for method in [Method::Mopps, Method::Dps] {
        let one = selections(method, 1);
        assert_eq!(one.len(), 5);
        assert!(one.iter().all(|ids| ids.len() == 256));
        assert_ne!(one[0], one[1], "{method:?}: steps should differ");
        assert_eq!(one, selections(method, 2), "{method:?} on 2 threads");
        assert_eq!(one, selections(method, 3), "{method:?} on 3 threads");
    }
}
