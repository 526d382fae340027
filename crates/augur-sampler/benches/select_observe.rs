//! select + observe cost with the whole pool as candidates (issue 7 budget: <= 20 ms at 10^6),
//! then the same through the JSON Lines protocol (issue 14 budget: <= 5 ms overhead at B=256
//! with a registered pool), against the old way of re-sending the candidate list.
//! `cargo bench -p augur-sampler --bench select_observe -- [NUM_PROMPTS] [B] [ITERS]`

use augur_sampler::{serve, Method, Outcome, SamplerConfig};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
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
    // (label, method, every prompt observed first, untimed select + observe steps before timing)
    for (label, method, seen, warm) in [
        ("uniform", Method::Uniform, false, 0),
        ("mopps (unseen pool)", Method::Mopps, false, 0),
        ("mopps (all seen)", Method::Mopps, true, 0),
        ("dps (unseen pool)", Method::Dps, false, 0),
        ("dps (all seen)", Method::Dps, true, 0),
        // A long run's steady state: most seen prompts were last observed long ago (DPS's
        // settled prompts, λ = 0.7 default).
        ("dps (seen, 150 steps on)", Method::Dps, true, 150),
        ("greso (all seen)", Method::Greso, true, 0),
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
        for it in 0..warm {
            let sel = s.select(&pool, b).expect("select");
            let outs: Vec<Outcome> = sel
                .ids
                .iter()
                .map(|&i| Outcome::new(i, (i as usize + it) as u32 % (k + 1), k))
                .collect();
            s.observe(&outs).expect("observe");
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
    for method in [Method::Mopps, Method::Dps] {
        protocol_round_trip(method, n, b, iters, true);
        protocol_round_trip(method, n, b, iters.min(5), false);
    }
}

/// select + observe through `serve` on an OS pipe, as a client process would drive it:
/// request line out, response line in. `registered`: the pool is sent once with `register`
/// (count form); otherwise every select re-sends the candidate list (the old protocol).
/// Reports the round trip and its overhead over the engine's own select + update time.
fn protocol_round_trip(method: Method, n: usize, b: usize, iters: usize, registered: bool) {
    let (req_rx, mut req_tx) = std::io::pipe().expect("pipe");
    let (resp_rx, resp_tx) = std::io::pipe().expect("pipe");
    let server = std::thread::spawn(move || {
        let mut s = SamplerConfig::for_method(method).build().expect("sampler");
        serve(BufReader::new(req_rx), resp_tx, &mut s).expect("serve");
    });
    let mut responses = BufReader::new(resp_rx);
    let mut call = |req: &Value| -> Value {
        let mut line = serde_json::to_vec(req).expect("json");
        line.push(b'\n');
        req_tx.write_all(&line).expect("write");
        let mut resp = String::new();
        responses.read_line(&mut resp).expect("read");
        let v: Value = serde_json::from_str(&resp).expect("response json");
        assert_eq!(v["ok"], true, "{v}");
        v
    };
    let select = if registered {
        call(&json!({"op": "register", "count": n}));
        json!({"op": "select", "b": b})
    } else {
        json!({"op": "select", "b": b, "candidates": (0..n as u32).collect::<Vec<u32>>()})
    };
    let k = 8u32;
    let (mut total, mut overhead) = (Vec::new(), Vec::new());
    for it in 0..iters {
        let t0 = Instant::now();
        let sel = call(&select);
        let outcomes: Vec<[u64; 3]> = sel["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|id| {
                let id = id.as_u64().expect("id");
                [id, (id + it as u64) % (k as u64 + 1), k as u64]
            })
            .collect();
        let obs = call(&json!({"op": "observe", "outcomes": outcomes}));
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let t = &obs["telemetry"];
        let engine_ms =
            (t["select_us"].as_f64().unwrap_or(0.0) + t["update_us"].as_f64().unwrap_or(0.0)) / 1e3;
        total.push(ms);
        overhead.push(ms - engine_ms);
    }
    drop(req_tx);
    server.join().expect("server thread");
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "protocol {:<5} {:<26} round trip: median {:7.2} ms, overhead over engine {:6.2} ms",
        format!("{method:?}").to_lowercase(),
        if registered {
            "(registered pool)"
        } else {
            "(candidates re-sent)"
        },
        median(&mut total),
        median(&mut overhead)
    );
}
