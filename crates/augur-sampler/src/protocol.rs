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
//! ```
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
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Request {
    Select {
        candidates: Vec<u32>,
        b: usize,
        #[serde(default)]
        seq: Option<Value>,
    },
    Observe {
        outcomes: Vec<WireOutcome>,
        #[serde(default)]
        seq: Option<Value>,
    },
    Save {
        #[serde(default)]
        path: Option<String>,
        #[serde(default)]
        seq: Option<Value>,
    },
    Load {
        #[serde(default)]
        path: Option<String>,
        #[serde(default)]
        state: Option<Box<SamplerState>>,
        #[serde(default)]
        seq: Option<Value>,
    },
    Info {
        #[serde(default)]
        seq: Option<Value>,
    },
}

fn handle(sampler: &mut Sampler, line: &str) -> (Result<Value>, Option<Value>) {
    let req: Request = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => return (Err(SamplerError::InvalidArgument(format!("bad request: {e}"))), None),
    };
    match req {
        Request::Select { candidates, b, seq } => {
            let r = sampler
                .select(&candidates, b)
                .map(|s| json!({"ids": s.ids, "predicted": s.predicted}));
            (r, seq)
        }
        Request::Observe { outcomes, seq } => {
            let outs: Vec<Outcome> = outcomes
                .into_iter()
                .map(|w| match w {
                    WireOutcome::Triple(id, s, k) => Outcome::new(id, s, k),
                    WireOutcome::Object(o) => o,
                })
                .collect();
            let r = sampler
                .observe(&outs)
                .and_then(|t| Ok(json!({"telemetry": serde_json::to_value(t)?})));
            (r, seq)
        }
        Request::Save { path, seq } => {
            let r = match path {
                Some(p) => sampler.save_to_file(&p).map(|_| json!({})),
                None => sampler
                    .state()
                    .and_then(|s| Ok(json!({"state": serde_json::to_value(s)?}))),
            };
            (r, seq)
        }
        Request::Load { path, state, seq } => {
            let r = match (path, state) {
                (Some(p), None) => sampler.load_from_file(&p),
                (None, Some(s)) => sampler.load_state(*s),
                _ => Err(SamplerError::InvalidArgument(
                    "load needs exactly one of path or state".into(),
                )),
            };
            (r.map(|_| json!({})), seq)
        }
        Request::Info { seq } => (Ok(json!({"name": sampler.name(), "step": sampler.step()})), seq),
    }
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
