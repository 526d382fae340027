//! DPS observe updates only the prompts whose state is still settling (issue 14). These tests
//! hold it to the eager rule of the DPS paper (every seen prompt decays every step), written
//! out independently below: the same predictions up to float rounding over hundreds of steps,
//! with the pool in id order and shuffled, candidates that leave prompts never observed, λ from
//! 0.5 to 1; exact resume; and DPS states saved before the change still load.

use augur_sampler::{DpsPredictor, Method, Outcome, Sampler, SamplerConfig, SamplerState};

const K: u32 = 8;

/// The eager DPS HMM: per prompt Dirichlet counts `alpha[next][prev]`, predicted π and the
/// filtered π of the last step; every step, observed prompts condition on their state and all
/// other seen prompts decay and propagate.
struct EagerDps {
    lambda: f64,
    alpha: Vec<[[f64; 3]; 3]>,
    pi: Vec<[f64; 3]>,
    pi_before: Vec<[f64; 3]>,
    seen: Vec<bool>,
}

fn column_normalised(alpha: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut p = [[0.0; 3]; 3];
    for prev in 0..3 {
        let total: f64 = (0..3).map(|next| alpha[next][prev]).sum();
        for next in 0..3 {
            p[next][prev] = alpha[next][prev] / total;
        }
    }
    p
}

fn propagate(p: &[[f64; 3]; 3], v: &[f64; 3]) -> [f64; 3] {
    let out: Vec<f64> = (0..3)
        .map(|next| (0..3).map(|prev| p[next][prev] * v[prev]).sum())
        .collect();
    let total: f64 = out.iter().sum();
    [out[0] / total, out[1] / total, out[2] / total]
}

impl EagerDps {
    fn new(n: usize, lambda: f64) -> Self {
        Self {
            lambda,
            alpha: vec![[[1.0; 3]; 3]; n],
            pi: vec![[1.0 / 3.0; 3]; n],
            pi_before: vec![[1.0 / 3.0; 3]; n],
            seen: vec![false; n],
        }
    }

    fn decay(&mut self, i: usize) {
        for row in self.alpha[i].iter_mut() {
            for a in row.iter_mut() {
                *a = self.lambda * *a + (1.0 - self.lambda);
            }
        }
    }

    fn observe(&mut self, outs: &[Outcome]) {
        let mut now = vec![false; self.seen.len()];
        for o in outs {
            let (i, y) = (o.id as usize, o.state() as usize);
            let p = column_normalised(&self.alpha[i]);
            let xi: Vec<f64> = (0..3)
                .map(|prev| self.pi_before[i][prev] * p[y][prev])
                .collect();
            let total: f64 = xi.iter().sum();
            self.decay(i);
            for (a, x) in self.alpha[i][y].iter_mut().zip(&xi) {
                *a += x / total;
            }
            let mut onehot = [0.0; 3];
            onehot[y] = 1.0;
            self.pi[i] = propagate(&column_normalised(&self.alpha[i]), &onehot);
            self.pi_before[i] = onehot;
            self.seen[i] = true;
            now[i] = true;
        }
        for (i, observed_now) in now.into_iter().enumerate() {
            if self.seen[i] && !observed_now {
                self.decay(i);
                self.pi_before[i] = self.pi[i];
                self.pi[i] = propagate(&column_normalised(&self.alpha[i]), &self.pi[i]);
            }
        }
    }

    /// (mean, std, partial) of prompt i, as DPS summarises π with values (0, ½, 1).
    fn estimate(&self, i: usize) -> [f64; 3] {
        let pi = self.pi[i];
        let mean = 0.5 * pi[1] + pi[2];
        let var = pi[0] * mean * mean + pi[1] * (0.5 - mean).powi(2) + pi[2] * (1.0 - mean).powi(2);
        [mean, var.sqrt(), pi[1]]
    }
}

/// A fixed success rate per prompt (hard, easy and in-between prompts, unrelated to id order)
/// and a seeded draw of k rollouts.
fn successes(id: u32, step: usize) -> u32 {
    let h = augur_sampler::random::splitmix64(id as u64 ^ 0x5EED);
    let p = match h % 3 {
        0 => 0.05,
        1 => 0.95,
        _ => (h >> 8) as f64 % 1000.0 / 1000.0,
    };
    (0..K)
        .filter(|&j| {
            let key = ((id as u64) << 24) ^ ((step as u64) << 4) ^ j as u64;
            let u = augur_sampler::random::splitmix64(key);
            ((u >> 11) as f64 / (1u64 << 53) as f64) < p
        })
        .count() as u32
}

fn dps(lambda: f64, seed: u64) -> SamplerConfig {
    let mut cfg = SamplerConfig::for_method(Method::Dps);
    cfg.dps.lambda = lambda;
    cfg.group_size = K;
    cfg.seed = seed;
    cfg
}

/// Largest |sampler − eager| over every id's (mean, std, partial), never-observed ids included.
fn max_gap(s: &Sampler, eager: &EagerDps) -> f64 {
    let ids: Vec<u32> = (0..eager.seen.len() as u32).collect();
    let e = s.estimate(&ids).unwrap();
    let mut worst = 0.0f64;
    for (i, &id) in ids.iter().enumerate() {
        let want = eager.estimate(id as usize);
        for (got, want) in [e.mean[i], e.std[i], e.partial[i]].iter().zip(want) {
            worst = worst.max((*got as f64 - want).abs());
        }
    }
    worst
}

/// Drives a DPS sampler for `steps` steps over candidate pools from `pool_of(step)`; after every
/// step its predictions (f32) must match the eager rule's (f64) to f32 rounding.
fn check_against_eager(
    lambda: f64,
    n: u32,
    b: usize,
    steps: usize,
    pool_of: &dyn Fn(usize) -> Vec<u32>,
) -> (Sampler, EagerDps) {
    let mut s = dps(lambda, 3).build().unwrap();
    let mut eager = EagerDps::new(n as usize, lambda);
    for step in 0..steps {
        let sel = s.select(&pool_of(step), b).unwrap();
        let outs: Vec<Outcome> = sel
            .ids
            .iter()
            .map(|&id| Outcome::new(id, successes(id, step), K))
            .collect();
        s.observe(&outs).unwrap();
        eager.observe(&outs);
        let gap = max_gap(&s, &eager);
        // f32 carries ~6e-8 relative; a settled state is within 1e-14 of the eager one.
        assert!(
            gap < 2e-7,
            "λ={lambda} step {step}: prediction off by {gap}"
        );
    }
    (s, eager)
}

fn dps_predictor(s: &Sampler) -> DpsPredictor {
    // The predictor's own state, through the saved JSON (the only way out of a Sampler).
    let st = serde_json::to_value(s.state().unwrap()).unwrap();
    let mut p = DpsPredictor::new(Default::default()).unwrap();
    augur_sampler::Predictor::load(&mut p, st["predictor"].clone()).unwrap();
    p
}

fn shuffled(n: u32, seed: u64) -> Vec<u32> {
    let mut pool: Vec<u32> = (0..n).collect();
    rand::seq::SliceRandom::shuffle(
        pool.as_mut_slice(),
        &mut augur_sampler::random::chunk_rng(seed, 1),
    );
    pool
}

#[test]
fn whole_pool_in_order_and_shuffled_match_the_eager_rule() {
    let n = 1500;
    for lambda in [0.5, 0.7] {
        let in_order: Vec<u32> = (0..n).collect();
        let (a, eager) = check_against_eager(lambda, n, 16, 300, &|_| in_order.clone());
        let mixed = shuffled(n, 9);
        let (b, _) = check_against_eager(lambda, n, 16, 300, &|_| mixed.clone());
        // The pool's order changes nothing, settling included.
        let (pa, pb) = (dps_predictor(&a), dps_predictor(&b));
        assert_eq!(pa.settling(), pb.settling(), "λ={lambda}");
        // The point of it: most seen prompts have settled and are no longer swept. At λ = 0.5
        // a prompt settles within ~60 steps of its last observation (0.5^47 < 1e-14).
        let seen = eager.seen.iter().filter(|&&x| x).count();
        let settling = pa.settling().len();
        assert!(
            settling <= 16 * if lambda == 0.5 { 60 } else { 110 },
            "λ={lambda}: {settling} of {seen} seen prompts still settling"
        );
        assert!(seen > 2 * settling, "λ={lambda}: {settling} of {seen}");
    }
}

#[test]
fn candidate_subsets_leave_prompts_unobserved_and_still_match() {
    // 64 random candidates a step out of 2000 (a changing subset, as `augur grpo` draws them):
    // many prompts are never observed and stay at the prior on both sides.
    let n = 2000;
    for lambda in [0.9, 1.0] {
        let (_, eager) = check_against_eager(lambda, n, 8, 250, &|step| {
            shuffled(n, 100 + step as u64)[..64].to_vec()
        });
        let unseen = eager.seen.iter().filter(|&&x| !x).count();
        assert!(
            unseen > 100,
            "λ={lambda}: only {unseen} prompts never observed"
        );
    }
}

#[test]
fn settled_prompts_drift_no_further_than_the_tolerance() {
    // Observe every prompt once with mixed histories, then never again: after many steps the
    // eager states have moved on by at most 1e-14 from where the settled ones stopped.
    for lambda in [0.3, 0.7, 0.95, 1.0] {
        let mut s = dps(lambda, 1).build().unwrap();
        let mut eager = EagerDps::new(302, lambda);
        for step in 0..6 {
            let outs: Vec<Outcome> = (0..300u32)
                .filter(|id| !(id + step as u32).is_multiple_of(3))
                .map(|id| Outcome::new(id, successes(id, step), K))
                .collect();
            s.observe(&outs).unwrap();
            eager.observe(&outs);
        }
        for step in 0..3000 {
            let outs = [Outcome::new(300 + step as u32 % 2, 4, K)];
            s.observe(&outs).unwrap();
            eager.observe(&outs);
        }
        let p = dps_predictor(&s);
        assert!(
            p.settling().iter().all(|&id| id >= 300),
            "λ={lambda}: {:?}",
            p.settling()
        );
        for id in 0..300u32 {
            let c = p.cell(id);
            let gap: f64 = (0..3)
                .map(|j| (c.pi[j] - eager.pi[id as usize][j]).abs())
                .sum();
            assert!(gap <= 2e-14, "λ={lambda} prompt {id}: π off by {gap}");
        }
    }
}

/// A sampler restored from a state saved mid-run (settling list included) continues exactly
/// like the one that kept running, past the steps where prompts settle.
#[test]
fn resume_is_exact_with_settled_prompts() {
    let n = 800;
    let pool: Vec<u32> = (0..n).collect();
    let cfg = dps(0.5, 7);
    let drive = |s: &mut Sampler, from: usize, to: usize| -> Vec<(Vec<u32>, Vec<f32>)> {
        (from..to)
            .map(|step| {
                let sel = s.select(&pool, 16).unwrap();
                let outs: Vec<Outcome> = sel
                    .ids
                    .iter()
                    .map(|&id| Outcome::new(id, successes(id, step), K))
                    .collect();
                s.observe(&outs).unwrap();
                (sel.ids, sel.predicted)
            })
            .collect()
    };
    let mut a = cfg.build().unwrap();
    drive(&mut a, 0, 120);
    let json = serde_json::to_string(&a.state().unwrap()).unwrap();
    assert!(json.contains("\"settling\""));
    let tail_a = drive(&mut a, 120, 240);
    let mut b = cfg.build().unwrap();
    b.load_state(serde_json::from_str::<SamplerState>(&json).unwrap())
        .unwrap();
    assert_eq!(tail_a, drive(&mut b, 120, 240));
}

/// Protocol states saved by augur before the settling list existed (`tests/fixtures/
/// dps_state_v1.json`, written by `augur sampler`'s `save` op at the commit before it: 120
/// prompts, λ = 0.5, seed 5, 40 steps; `dps_state_v1_history.json` holds the outcomes it
/// observed) load through the protocol and as a checkpoint, predict what the eager rule predicts
/// after that history, and keep doing so.
#[test]
fn states_saved_before_the_settling_list_load_and_continue() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/{name}")).unwrap()).unwrap()
    };
    let state = read("dps_state_v1.json");
    assert!(state["sampler"]["predictor"].get("settling").is_none());
    let mut eager = EagerDps::new(120, 0.5);
    for step in read("dps_state_v1_history.json")["outcomes"]
        .as_array()
        .unwrap()
    {
        let outs: Vec<Outcome> = step
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                let v: Vec<u32> = serde_json::from_value(o.clone()).unwrap();
                Outcome::new(v[0], v[1], v[2])
            })
            .collect();
        eager.observe(&outs);
    }
    // Through the protocol, as a client resumes a server.
    let ids: Vec<u32> = (0..120).collect();
    let input = format!(
        "{}\n{}\n",
        serde_json::json!({"op": "load", "path": format!("{dir}/dps_state_v1.json")}),
        serde_json::json!({"op": "predict", "ids": ids})
    );
    let mut server = dps(0.5, 5).build().unwrap();
    let mut out = Vec::new();
    augur_sampler::serve(input.as_bytes(), &mut out, &mut server).unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["ok"], true, "{}", lines[0]);
    for (i, &id) in ids.iter().enumerate() {
        let want = eager.estimate(id as usize);
        for (j, key) in ["mean", "std", "partial"].into_iter().enumerate() {
            let got = lines[1][key][i].as_f64().unwrap();
            assert!(
                (got - want[j]).abs() < 2e-7,
                "{key} of {id}: {got} vs {}",
                want[j]
            );
        }
    }
    // As a checkpoint's sampler state, then 160 more steps.
    let mut s = dps(0.5, 5).build().unwrap();
    s.load_state(serde_json::from_value(state["sampler"].clone()).unwrap())
        .unwrap();
    assert_eq!(s.step(), 40);
    assert!(max_gap(&s, &eager) < 2e-7);
    for step in 40..200u32 {
        let sel = s.select(&ids, 8).unwrap();
        let outs: Vec<Outcome> = sel
            .ids
            .iter()
            .map(|&id| Outcome::new(id, (id * 7 + step * 3) % (K + 1), K))
            .collect();
        s.observe(&outs).unwrap();
        eager.observe(&outs);
        let gap = max_gap(&s, &eager);
        assert!(gap < 2e-7, "step {step}: off by {gap}");
    }
}
