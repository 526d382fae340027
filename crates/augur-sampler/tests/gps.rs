//! GPS: the neural predictor generalises to unseen prompts, resumes exactly, plugs into the
//! config (its ablation on the simulated learner is in augur-ablate).

use augur_sampler::predictor::{GpsConfig, GpsPredictor, PredictCtx, Predictor, Quantity};
use augur_sampler::{EmbeddingTable, Method, Outcome, SamplerConfig};

const D: usize = 16;

fn embedding(i: u32) -> Vec<f32> {
    (0..D)
        .map(|j| 2.0 * augur_sampler::random::hash_unit(11, (i as usize * D + j) as u64) - 1.0)
        .collect()
}

/// The hidden truth: a smooth nonlinear function of the embedding.
fn truth(e: &[f32]) -> f32 {
    let z = 3.0 * (e[0] + 0.5 * e[1] - 0.7 * e[2]) + (2.0 * e[3]).sin();
    1.0 / (1.0 + (-z).exp())
}

fn mse(p: &GpsPredictor, ids: &[u32]) -> f32 {
    let mut out = vec![0.0; ids.len()];
    let ctx = PredictCtx { k: 16, seed: 0 };
    p.predict(ids, Quantity::Mean, ctx, &mut out).unwrap();
    ids.iter()
        .zip(&out)
        .map(|(&i, &q)| (q - truth(&embedding(i))).powi(2))
        .sum::<f32>()
        / ids.len() as f32
}

#[test]
fn learns_a_synthetic_function_and_generalises_to_unseen_prompts() {
    let emb = EmbeddingTable::shared(D);
    let cfg = GpsConfig {
        steps_per_update: 20,
        ..Default::default()
    };
    let mut p = GpsPredictor::new(cfg, emb, 3).unwrap();
    let all: Vec<u32> = (0..1200).collect();
    let data: Vec<f32> = all.iter().flat_map(|&i| embedding(i)).collect();
    p.set_embeddings(&all, &data).unwrap();
    let (train, test) = all.split_at(1000);
    let before = mse(&p, test);
    for batch in train.chunks(50) {
        let outs: Vec<Outcome> = batch
            .iter()
            .map(|&i| Outcome::new(i, (truth(&embedding(i)) * 16.0).round() as u32, 16))
            .collect();
        p.observe(&outs).unwrap();
    }
    let after = mse(&p, test);
    assert!(
        after < 0.35 * before,
        "unseen-prompt MSE {after:.4} after training vs {before:.4} untrained"
    );
    assert!(p.last_loss().is_some() && p.buffer_len() == 1000);
}

fn gps_config() -> SamplerConfig {
    let mut c = SamplerConfig::for_method(Method::Gps);
    c.seed = 5;
    c.gps.embedding_dim = D;
    c
}

#[test]
fn save_load_resumes_exactly() {
    let pool: Vec<u32> = (0..400).collect();
    let data: Vec<f32> = pool.iter().flat_map(|&i| embedding(i)).collect();
    let step = |s: &mut augur_sampler::Sampler, t: u32| {
        let sel = s.select(&pool, 16).unwrap();
        let outs: Vec<Outcome> = sel
            .ids
            .iter()
            .map(|&i| Outcome::new(i, (truth(&embedding(i)) * 8.0) as u32 ^ (t & 1), 8))
            .collect();
        s.observe(&outs).unwrap();
        sel
    };
    let mut a = gps_config().build().unwrap();
    a.set_embeddings(&pool, &data).unwrap();
    for t in 0..5 {
        step(&mut a, t);
    }
    let json = serde_json::to_string(&a.state().unwrap()).unwrap();
    let mut b = gps_config().build().unwrap();
    b.set_embeddings(&pool, &data).unwrap();
    b.load_state(serde_json::from_str(&json).unwrap()).unwrap();
    for t in 5..10 {
        let (x, y) = (step(&mut a, t), step(&mut b, t));
        assert_eq!(x.ids, y.ids, "step {t}");
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&x.predicted), bits(&y.predicted), "step {t}");
    }
    // Fresh-from-seed determinism, too.
    let mut c = gps_config().build().unwrap();
    c.set_embeddings(&pool, &data).unwrap();
    let mut d = gps_config().build().unwrap();
    d.set_embeddings(&pool, &data).unwrap();
    for t in 0..3 {
        assert_eq!(step(&mut c, t), step(&mut d, t));
    }
    // A state of another method is refused.
    let mut m = SamplerConfig::for_method(Method::Mopps).build().unwrap();
    assert!(m.load_state(serde_json::from_str(&json).unwrap()).is_err());
}

#[test]
fn config_and_errors() {
    assert_eq!("GPS".parse::<Method>().unwrap(), Method::Gps);
    let c: SamplerConfig = toml::from_str(
        "method = \"gps\"\n[gps]\nhidden = 32\nlr = 0.001\nsteps_per_update = 4\nbuffer_size = 512\nlambda_div = 0.1\nembedding_dim = 8\ndiversity = \"mean\"\n",
    )
    .unwrap();
    assert_eq!(c.gps.hidden, 32);
    let mut s = c.build().unwrap();
    assert_eq!(s.name(), "gps+diverse");
    assert!(s.uses_embeddings());
    let err = s.select(&[0, 1, 2], 2).unwrap_err().to_string();
    assert!(err.contains("no embedding"), "{err}");
    let err = s.set_embeddings(&[0], &[0.0; 7]).unwrap_err().to_string();
    assert!(err.contains("dimension 7"), "{err}");
    s.set_embeddings(&[0, 1, 2], &[0.5; 24]).unwrap();
    assert_eq!(s.select(&[0, 1, 2], 2).unwrap().predicted, vec![0.5, 0.5]);
    for bad in [
        "hidden = 0",
        "lr = -1.0",
        "buffer_size = 0",
        "lambda_div = -0.5",
    ] {
        let c: SamplerConfig =
            toml::from_str(&format!("method = \"gps\"\n[gps]\n{bad}\n")).unwrap();
        assert!(c.build().is_err(), "{bad} accepted");
    }
    assert!(toml::from_str::<SamplerConfig>("method = \"gps\"\n[gps]\nhiden = 3\n").is_err());
    let mut u = SamplerConfig::for_method(Method::Uniform).build().unwrap();
    assert!(!u.uses_embeddings() && u.set_embeddings(&[0], &[1.0]).is_err());
}

#[test]
fn json_lines_protocol_registers_embeddings() {
    use serde_json::{json, Value};
    let lines = [
        json!({"op": "select", "candidates": [0, 1, 2], "b": 2}),
        json!({"op": "embeddings", "ids": [0, 1, 2], "data": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]}),
        json!({"op": "embeddings", "ids": [3], "data": [[1.0, 0.0, 0.0]]}),
        json!({"op": "select", "candidates": [0, 1, 2], "b": 2}),
        json!({"op": "observe", "outcomes": [[0, 3, 8], [1, 8, 8]]}),
        json!({"op": "select", "candidates": [0, 1, 2], "b": 2}),
    ];
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let mut out = Vec::new();
    let mut s = SamplerConfig::for_method(Method::Gps).build().unwrap();
    augur_sampler::serve(input.as_bytes(), &mut out, &mut s).unwrap();
    let r: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(r[0]["ok"], false, "no embeddings yet: {}", r[0]);
    assert_eq!(r[1]["count"], 3);
    assert_eq!(r[2]["ok"], false, "dimension mismatch: {}", r[2]);
    assert_eq!(r[3]["ok"], true);
    assert_eq!(r[4]["ok"], true);
    assert_eq!(r[5]["ids"].as_array().unwrap().len(), 2);
}
