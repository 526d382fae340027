//! Round trips of every protocol op (docs/sampler-protocol.md) through `serve`, errors
//! included, and save/load of the server state across the new ops.

use augur_sampler::{serve, Method, SamplerConfig};
use serde_json::{json, Value};

fn serve_bytes(method: Method, input: &[u8]) -> Vec<Value> {
    let mut s = SamplerConfig::for_method(method).build().unwrap();
    let mut out = Vec::new();
    serve(input, &mut out, &mut s).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn run(method: Method, lines: &[Value]) -> Vec<Value> {
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    serve_bytes(method, input.as_bytes())
}

fn ids(v: &Value) -> Vec<u32> {
    v["ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no ids in {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Responses without the wall-clock fields of telemetry.
fn untimed(rs: &[Value]) -> Vec<Value> {
    rs.iter()
        .map(|r| {
            let mut r = r.clone();
            if let Some(t) = r.get_mut("telemetry").and_then(Value::as_object_mut) {
                t.remove("select_us");
                t.remove("update_us");
            }
            r
        })
        .collect()
}

fn err(v: &Value) -> String {
    assert_eq!(v["ok"], false, "expected an error, got {v}");
    v["error"].as_str().unwrap().to_string()
}

#[test]
fn register_then_select_by_count_from_the_pool() {
    let out = run(
        Method::Dps,
        &[
            json!({"op": "register", "count": 100}),
            json!({"op": "select", "b": 8}),
            json!({"op": "info"}),
        ],
    );
    assert_eq!(out[0]["count"], 100);
    let sel = ids(&out[1]);
    assert_eq!(sel.len(), 8);
    assert!(sel.iter().all(|&i| i < 100));
    assert_eq!(out[2]["pool"], 100);
    assert_eq!(out[2]["in_flight"], 8);
    // Explicit ids; a subset select must stay inside the pool.
    let out = run(
        Method::Mopps,
        &[
            json!({"op": "register", "ids": [10, 20, 30, 40]}),
            json!({"op": "select", "b": 2, "candidates": [20, 40]}),
            json!({"op": "select", "b": 1, "candidates": [20, 50]}),
        ],
    );
    let mut sel = ids(&out[1]);
    sel.sort();
    assert_eq!(sel, vec![20, 40]);
    assert!(err(&out[2]).contains("unknown id 50"), "{}", out[2]);
}

#[test]
fn in_flight_prompts_are_not_selected_again_until_observed_or_released() {
    let out = run(
        Method::Uniform,
        &[
            json!({"op": "register", "count": 6}),
            json!({"op": "select", "b": 3}),
            json!({"op": "select", "b": 3}),
            json!({"op": "select", "b": 1}),
            json!({"op": "release", "ids": [0, 1]}),
            json!({"op": "select", "b": 2}),
        ],
    );
    let (a, b) = (ids(&out[1]), ids(&out[2]));
    let mut both: Vec<u32> = a.iter().chain(&b).copied().collect();
    both.sort();
    assert_eq!(
        both,
        vec![0, 1, 2, 3, 4, 5],
        "generate-ahead batches overlap"
    );
    assert!(err(&out[3]).contains("in flight"), "{}", out[3]);
    assert_eq!(out[4]["released"], 2);
    let mut c = ids(&out[5]);
    c.sort();
    assert_eq!(c, vec![0, 1]);
}

#[test]
fn observe_frees_in_flight_prompts_and_checks_ids() {
    let out = run(
        Method::Dps,
        &[
            json!({"op": "register", "count": 4}),
            json!({"op": "select", "b": 4}),
            json!({"op": "observe", "outcomes": [[0, 1, 4], [1, 4, 4], [2, 0, 4], [3, 2, 4]]}),
            json!({"op": "info"}),
            json!({"op": "observe", "outcomes": [[9, 1, 4]]}),
            json!({"op": "observe", "outcomes": [[1, 1, 4], [1, 2, 4]]}),
            json!({"op": "info"}),
        ],
    );
    assert_eq!(out[2]["telemetry"]["rollouts"], 16);
    assert_eq!(out[2]["telemetry"]["effective_ratio"], 0.5);
    assert_eq!(out[3]["in_flight"], 0);
    assert!(err(&out[4]).contains("unknown id 9"), "{}", out[4]);
    assert!(err(&out[5]).contains("observed twice"), "{}", out[5]);
    // Failed observes do not count as steps.
    assert_eq!(out[6]["step"], 1);
}

#[test]
fn select_before_register_is_an_error() {
    let out = run(Method::Mopps, &[json!({"op": "select", "b": 2})]);
    assert!(
        err(&out[0]).contains("select before register"),
        "{}",
        out[0]
    );
}

#[test]
fn register_rejects_bad_pools() {
    let out = run(
        Method::Mopps,
        &[
            json!({"op": "register", "ids": [1, 2, 1]}),
            json!({"op": "register", "ids": []}),
            json!({"op": "register", "ids": [1], "count": 3}),
            json!({"op": "register", "count": 2, "embeddings": [[0.1]]}),
            json!({"op": "register", "count": 2, "extra": 1}),
        ],
    );
    assert!(err(&out[0]).contains("id 1 given twice"));
    assert!(err(&out[1]).contains("empty"));
    assert!(err(&out[2]).contains("exactly one of ids or count"));
    // MoPPS reads no embeddings (and the row count is wrong too).
    err(&out[3]);
    assert!(err(&out[4]).contains("extra"), "{}", out[4]);
}

#[test]
fn register_with_embeddings_serves_gps() {
    let rows: Vec<Vec<f32>> = (0..20)
        .map(|i| {
            (0..4)
                .map(|j| ((i * 7 + j * 3) % 11) as f32 / 11.0)
                .collect()
        })
        .collect();
    let mut cfg = SamplerConfig::for_method(Method::Gps);
    cfg.gps.embedding_dim = 4;
    let mut s = cfg.build().unwrap();
    let input = [
        json!({"op": "register", "count": 20, "embeddings": rows}),
        json!({"op": "select", "b": 4}),
    ]
    .iter()
    .map(|l| format!("{l}\n"))
    .collect::<String>();
    let mut out = Vec::new();
    serve(input.as_bytes(), &mut out, &mut s).unwrap();
    let out: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out[0]["count"], 20, "{}", out[0]);
    assert_eq!(ids(&out[1]).len(), 4, "{}", out[1]);
}

/// `predict` matches the MoPPS posterior by hand: prompt 3 after 6 of 8 from Beta(1, 1) is
/// Beta(7, 3): mean 0.7, std sqrt(21/1100); an unseen prompt is Beta(1, 1): mean 0.5, std
/// sqrt(1/12). Asking does not change later selections.
#[test]
fn predict_returns_estimate_and_uncertainty_without_touching_the_rng() {
    let steps = |with_predict: bool| {
        let mut lines = vec![
            json!({"op": "register", "count": 50}),
            json!({"op": "observe", "outcomes": [[3, 6, 8]]}),
        ];
        if with_predict {
            lines.push(json!({"op": "predict", "ids": [3, 4]}));
        }
        lines.push(json!({"op": "select", "b": 5}));
        run(Method::Mopps, &lines)
    };
    let with = steps(true);
    let p = &with[2];
    let f = |k: &str, i: usize| p[k][i].as_f64().unwrap();
    assert!((f("mean", 0) - 0.7).abs() < 1e-6, "{p}");
    assert!(
        (f("std", 0) - (21.0f64 / 1100.0).sqrt()).abs() < 1e-6,
        "{p}"
    );
    assert!((f("mean", 1) - 0.5).abs() < 1e-6, "{p}");
    assert!((f("std", 1) - (1.0f64 / 12.0).sqrt()).abs() < 1e-6, "{p}");
    // P(0 < s < 8) under Beta(1,1) is 1 − 2/9.
    assert!((f("partial", 1) - 7.0 / 9.0).abs() < 1e-6, "{p}");
    assert_eq!(with[3]["ids"], steps(false)[2]["ids"]);
    let out = run(
        Method::Mopps,
        &[
            json!({"op": "register", "count": 5}),
            json!({"op": "predict", "ids": [7]}),
        ],
    );
    assert!(err(&out[1]).contains("unknown id 7"));
}

/// DS-style step: select 8, roll out, filter keeps the effective groups and tops up 4 more
/// (never one already rolled out), then observe commits every group of the step at once.
#[test]
fn filter_rounds_then_one_observe_per_step() {
    let out = run(
        Method::Uniform,
        &[
            json!({"op": "register", "count": 12}),
            json!({"op": "select", "b": 8}),
        ],
    );
    let first = ids(&out[1]);
    let outcomes: Vec<Value> = first
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let wins = [0, 2, 4, 3][i % 4];
            json!([id, wins, 4])
        })
        .collect();
    let mut lines = vec![
        json!({"op": "register", "count": 12}),
        json!({"op": "select", "b": 8}),
        json!({"op": "filter", "outcomes": outcomes, "topup": 4}),
        json!({"op": "info"}),
    ];
    let out = run(Method::Uniform, &lines);
    let f = &out[2];
    assert_eq!(f["kept_total"], 4, "{f}");
    assert_eq!(f["rolled_out_total"], 8);
    assert_eq!(f["keep"].as_array().unwrap().len(), 4);
    assert_eq!(f["dropped"].as_array().unwrap().len(), 4);
    let topup = ids(f);
    assert_eq!(topup.len(), 4);
    assert!(topup.iter().all(|id| !first.contains(id)), "{f}");
    assert_eq!(out[3]["round"], 8);
    // Second round (rewards form, threshold 0.5), repeating a rolled-out prompt is an error,
    // then observe commits 12 groups as one step.
    let second: Vec<Value> = topup
        .iter()
        .map(|&id| json!({"id": id, "rewards": [1.0, 0.0, 0.7, 0.2]}))
        .collect();
    lines.push(json!({"op": "filter", "outcomes": [[first[0], 1, 4]]}));
    lines.push(json!({"op": "filter", "outcomes": second}));
    lines.push(json!({"op": "observe"}));
    lines.push(json!({"op": "info"}));
    let out = run(Method::Uniform, &lines);
    assert!(err(&out[4]).contains("observed twice"), "{}", out[4]);
    assert_eq!(out[5]["kept_total"], 8, "{}", out[5]);
    let t = &out[6]["telemetry"];
    assert_eq!(t["rollouts"], 48, "{t}");
    assert_eq!(t["step"], 1);
    assert!((t["effective_ratio"].as_f64().unwrap() - 8.0 / 12.0).abs() < 1e-9);
    assert_eq!(out[7]["round"], 0);
    assert_eq!(out[7]["in_flight"], 0);
}

/// Save mid-step (pool, in-flight prompts and an open filter round) and load into a fresh
/// server: it continues exactly as the original does, through a file and inline.
#[test]
fn server_state_round_trips_across_the_new_ops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.json").display().to_string();
    let prefix = vec![
        json!({"op": "register", "count": 40}),
        json!({"op": "select", "b": 4, "candidates": [0, 1, 2, 3, 4, 5, 6, 7]}),
        json!({"op": "filter", "outcomes": [[0, 1, 4], [1, 4, 4]]}),
    ];
    let rest = vec![
        json!({"op": "select", "b": 6}),
        json!({"op": "observe", "outcomes": [[2, 2, 4]]}),
        json!({"op": "select", "b": 6}),
        json!({"op": "info"}),
    ];
    let mut a = prefix.clone();
    a.push(json!({"op": "save", "path": path}));
    a.push(json!({"op": "save"}));
    a.extend(rest.clone());
    let a = run(Method::Mopps, &a);
    assert!(a.iter().all(|r| r["ok"] == true), "{a:?}");
    let inline = a[4]["state"].clone();
    assert!(
        inline["pool"].is_array() && inline["round"].is_array(),
        "{inline}"
    );
    for load in [
        json!({"op": "load", "path": path}),
        json!({"op": "load", "state": inline}),
    ] {
        let mut b = vec![load];
        b.extend(rest.clone());
        let b = run(Method::Mopps, &b);
        assert_eq!(b[0]["ok"], true, "{}", b[0]);
        assert_eq!(
            untimed(&b[1..]),
            untimed(&a[5..]),
            "resumed server diverged"
        );
    }
    // A state for another method is refused and the server keeps serving.
    let out = run(
        Method::Dps,
        &[
            json!({"op": "load", "state": a[4]["state"].clone()}),
            json!({"op": "info"}),
        ],
    );
    assert!(err(&out[0]).contains("beta"), "{}", out[0]);
    assert_eq!(out[1]["ok"], true);
}

/// Bytes that are not UTF-8 get an error line naming the input line, and the server keeps
/// serving (issue 13 finding 7).
#[test]
fn non_utf8_lines_get_an_error_and_serving_continues() {
    let mut input = Vec::new();
    input.extend_from_slice(b"{\"op\":\"info\"}\n");
    input.extend_from_slice(&[0xff, 0xfe, b'{', 0x80, b'\n']);
    input.extend_from_slice(&[0xc3, 0x28, 0x00, 0x01, b'\n']);
    input.extend_from_slice(b"{\"op\":\"info\",\"seq\":3}\n");
    input.extend_from_slice(&[0xe2, 0x82]); // truncated sequence, no final newline
    let out = serve_bytes(Method::Mopps, &input);
    assert_eq!(out.len(), 5, "{out:?}");
    assert!(err(&out[1]).contains("line 2 is not UTF-8"), "{}", out[1]);
    assert!(err(&out[2]).contains("line 3"), "{}", out[2]);
    assert_eq!(out[3]["ok"], true);
    assert_eq!(out[3]["seq"], 3);
    assert!(err(&out[4]).contains("line 5"), "{}", out[4]);
}

#[test]
fn strict_bodies_name_the_bad_field() {
    let out = run(
        Method::Mopps,
        &[
            json!({"op": "select", "n": 3}),
            json!({"op": "observe", "outcomes": [[1, 2, 4]], "topup": 2}),
            json!({"op": "observe", "outcomes": [{"id": 1, "rewards": [1.0]}], "threshold": "x"}),
            json!({"op": "filter", "outcomes": [], "candidates": [1, 2]}),
        ],
    );
    assert!(err(&out[0]).contains("`n`"), "{}", out[0]);
    assert!(err(&out[1]).contains("topup"), "{}", out[1]);
    assert!(err(&out[2]).contains("observe"), "{}", out[2]);
    assert!(err(&out[3]).contains("without topup"), "{}", out[3]);
}
