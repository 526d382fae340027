//! JSON Lines protocol round trip through `serve` with in-memory pipes.

use augur_sampler::{serve, Method, SamplerConfig};
use serde_json::{json, Value};

fn run(method: Method, lines: &[Value]) -> Vec<Value> {
    let mut s = SamplerConfig::for_method(method).build().unwrap();
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let mut out = Vec::new();
    serve(input.as_bytes(), &mut out, &mut s).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn select_observe_save_load_round_trip() {
    let cands: Vec<u32> = (0..50).collect();
    let first = run(
        Method::Dps,
        &[
            json!({"op": "select", "candidates": cands, "b": 4, "seq": 1}),
            json!({"op": "observe", "outcomes": [[0, 2, 8], [1, 8, 8], {"id": 2, "successes": 0, "rollouts": 8}]}),
            json!({"op": "save"}),
            json!({"op": "select", "candidates": cands, "b": 4}),
            json!({"op": "info"}),
        ],
    );
    assert_eq!(first[0]["ok"], true);
    assert_eq!(first[0]["seq"], 1);
    assert_eq!(first[0]["ids"].as_array().unwrap().len(), 4);
    assert_eq!(first[1]["telemetry"]["rollouts"], 24);
    assert_eq!(first[1]["telemetry"]["step"], 1);
    let state = first[2]["state"].clone();
    assert!(state.is_object());
    assert_eq!(first[4]["name"], "dps+partial");
    // Loading the saved state into a fresh server reproduces the next selection exactly.
    let second = run(
        Method::Dps,
        &[
            json!({"op": "load", "state": state}),
            json!({"op": "select", "candidates": cands, "b": 4}),
        ],
    );
    assert_eq!(second[0]["ok"], true, "{}", second[0]);
    assert_eq!(second[1]["ids"], first[3]["ids"]);
    assert_eq!(second[1]["predicted"], first[3]["predicted"]);
}

#[test]
fn bad_requests_get_errors_and_serving_continues() {
    let out = run(
        Method::Mopps,
        &[
            json!({"op": "select", "candidates": [1, 2], "b": 5}),
            json!({"op": "observe", "outcomes": [[1, 9, 8]]}),
            json!({"op": "nope"}),
            json!({"op": "load", "path": "/nonexistent/state.json"}),
            json!({"op": "select", "candidates": [1, 2, 3], "b": 1}),
        ],
    );
    assert_eq!(out.len(), 5);
    for r in &out[..4] {
        assert_eq!(r["ok"], false, "{r}");
        assert!(r["error"].as_str().unwrap().len() > 5);
    }
    assert_eq!(out[4]["ok"], true);
}

#[test]
fn save_and_load_through_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json").display().to_string();
    let out = run(
        Method::Greso,
        &[
            json!({"op": "observe", "outcomes": [[3, 8, 8]]}),
            json!({"op": "save", "path": path}),
            json!({"op": "load", "path": path}),
            json!({"op": "info"}),
        ],
    );
    assert!(out.iter().all(|r| r["ok"] == true), "{out:?}");
    assert_eq!(out[3]["step"], 1);
}
