//! JSON Lines protocol, so other training stacks (TRL, verl, a simulator) can drive augur's
//! samplers over stdin/stdout: one request object per line in, one response object per line out.
//!
//! Requests (`op` selects the message):
//! ```text
//! {"op": "select", "candidates": [0, 1, 2, 3, 4, 5], "b": 2}
//!   -> {"ok": true, "ids": [3, 1], "predicted": [0.5, 0.5]}
//! {"op": "observe", "outcomes": [[3, 2, 8], [1, 8, 8]]}          // (id, successes, rollouts)
//!   -> {"ok": true, "telemetry": {"step": 1, "rollouts": 16, "rollouts_cumulative": 16,
//!       "effective_ratio": 0.5, "spearman": null, "brier": 0.28, "update_us": 3, "select_us": 9}}
//! {"op": "save", "path": "sampler.json"}  -> {"ok": true}             // state to a file
//! {"op": "save"}                          -> {"ok": true, "state": {...}}  // state inline
//! {"op": "load", "path": "sampler.json"}  -> {"ok": true}
//! {"op": "load", "state": {...}}          -> {"ok": true}
//! {"op": "info"}                          -> {"ok": true, "name": "beta+target", "step": 1}
//! {"op": "embeddings", "ids": [0, 1], "data": [[0.1, 0.2], [0.3, 0.4]]}  -> {"ok": true, "count": 2}
//! ```
//! `embeddings` registers prompt embeddings (one row per id) for samplers that read them
//! (`--method gps`); send them before the first `select`, and again after a `load`.
//! Outcomes may also be objects `{"id": 3, "successes": 2, "rollouts": 8}`. Prompt ids are
//! dense integers (0..num_prompts); map string ids on the client side. A bad request gets
//! `{"ok": false, "error": "..."}` and the server keeps serving; end of input ends the session.
//! An optional `"seq"` field in a request is echoed in its response.

use crate::error::{Result, SamplerError};
use crate::outcome::Outcome;
use crate::sampler::{Sampler, SamplerState};
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::{BufRead, Write};

/// An outcome as a triple or an object.
#[derive(Deserialize)]
#[serde(untagged)]
enum WireOutcome {
    Triple(u32, u32, u32),
    Object(Outcome),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectReq {
    candidates: Vec<u32>,
    b: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ObserveReq {
    outcomes: Vec<WireOutcome>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbeddingsReq {
    ids: Vec<u32>,
    data: Vec<Vec<f32>>,
}

/// `save` / `load` / `info`: an optional path, and for `load` an optional inline state
/// (kept as a raw `Value` and parsed on its own, because the RNG state holds a u128 that
/// serde's buffered enum parsing cannot carry).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateReq {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    state: Option<Value>,
}

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v)
        .map_err(|e| SamplerError::InvalidArgument(format!("bad request: {e}")))
}

fn dispatch(sampler: &mut Sampler, op: &str, v: Value) -> Result<Value> {
    match op {
        "select" => {
            let r: SelectReq = parse(v)?;
            let s = sampler.select(&r.candidates, r.b)?;
            Ok(json!({"ids": s.ids, "predicted": s.predicted}))
        }
        "observe" => {
            let r: ObserveReq = parse(v)?;
            let outs: Vec<Outcome> = r
                .outcomes
                .into_iter()
                .map(|w| match w {
                    WireOutcome::Triple(id, s, k) => Outcome::new(id, s, k),
                    WireOutcome::Object(o) => o,
                })
                .collect();
            let t = sampler.observe(&outs)?;
            Ok(json!({"telemetry": serde_json::to_value(t)?}))
        }
        "embeddings" => {
            let r: EmbeddingsReq = parse(v)?;
            if r.ids.len() != r.data.len() {
                return Err(SamplerError::InvalidArgument(format!(
                    "embeddings: {} ids but {} rows",
                    r.ids.len(),
                    r.data.len()
                )));
            }
            let dim = r.data.first().map_or(0, Vec::len);
            if let Some(row) = r.data.iter().find(|row| row.len() != dim) {
                return Err(SamplerError::InvalidArgument(format!(
                    "embeddings: row of {} values, expected {dim}",
                    row.len()
                )));
            }
            let flat: Vec<f32> = r.data.concat();
            sampler.set_embeddings(&r.ids, &flat)?;
            Ok(json!({"count": r.ids.len()}))
        }
        "save" => {
            let r: StateReq = parse(v)?;
            if r.state.is_some() {
                return Err(SamplerError::InvalidArgument("save takes no state".into()));
            }
            match r.path {
                Some(p) => sampler.save_to_file(&p).map(|_| json!({})),
                None => Ok(json!({"state": serde_json::to_value(sampler.state()?)?})),
            }
        }
        "load" => {
            let r: StateReq = parse(v)?;
            match (r.path, r.state) {
                (Some(p), None) => sampler.load_from_file(&p)?,
                (None, Some(s)) => {
                    let st: SamplerState = serde_json::from_value(s)
                        .map_err(|e| SamplerError::InvalidState(format!("load: {e}")))?;
                    sampler.load_state(st)?
                }
                _ => {
                    return Err(SamplerError::InvalidArgument(
                        "load needs exactly one of path or state".into(),
                    ))
                }
            }
            Ok(json!({}))
        }
        "info" => Ok(json!({"name": sampler.name(), "step": sampler.step()})),
        other => Err(SamplerError::InvalidArgument(format!(
            "unknown op {other:?} (select, observe, embeddings, save, load, info)"
        ))),
    }
}

/// Parses one request line and runs it. The envelope fields `op` and `seq` are taken out
/// first, so each op's body is checked strictly (unknown fields are errors).
fn handle(sampler: &mut Sampler, line: &str) -> (Result<Value>, Option<Value>) {
    let mut obj = match serde_json::from_str::<serde_json::Map<String, Value>>(line) {
        Ok(o) => o,
        Err(e) => {
            return (
                Err(SamplerError::InvalidArgument(format!("bad json: {e}"))),
                None,
            )
        }
    };
    let seq = obj.remove("seq");
    let op = match obj.remove("op") {
        Some(Value::String(op)) => op,
        _ => {
            let err =
                SamplerError::InvalidArgument("bad request: missing string field `op`".into());
            return (Err(err), seq);
        }
    };
    (dispatch(sampler, &op, Value::Object(obj)), seq)
}

/// Serves requests from `reader` until end of input, writing one response line per request.
/// Only I/O failures end it with an error; bad requests are answered with `ok: false`.
pub fn serve<R: BufRead, W: Write>(reader: R, mut writer: W, sampler: &mut Sampler) -> Result<()> {
    for line in reader.lines() {
        let line = line.map_err(|e| SamplerError::io("<protocol input>", e))?;
        if line.trim().is_empty() {
            continue;
        }
        let (result, seq) = handle(sampler, &line);
        let mut resp = match result {
            Ok(Value::Object(mut m)) => {
                m.insert("ok".into(), Value::Bool(true));
                Value::Object(m)
            }
            Ok(other) => json!({"ok": true, "result": other}),
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        };
        if let (Some(seq), Value::Object(m)) = (seq, &mut resp) {
            m.insert("seq".into(), seq);
        }
        serde_json::to_writer(&mut writer, &resp)?;
        writer
            .write_all(b"\n")
            .and_then(|_| writer.flush())
            .map_err(|e| SamplerError::io("<protocol output>", e))?;
    }
    Ok(())
}
