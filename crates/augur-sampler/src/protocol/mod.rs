//! JSON Lines protocol, so other training stacks (TRL, verl, a simulator) can drive augur's
//! samplers over stdin/stdout: one request object per line in, one response object per line out.
//! Every op, with JSON examples, is documented in `docs/sampler-protocol.md`.
//!
//! - [`wire`]: request bodies and outcome parsing (strict: unknown fields are errors).
//! - [`session`]: what a server remembers between requests (sampler, registered pool, the
//!   current step's filter rounds) and the handler of each op.
//! - [`serve`]: the loop. Any line (bad JSON, bad UTF-8, an unknown op) gets exactly one
//!   response line; only I/O failures end the session.

mod session;
mod wire;

pub use session::{ServerState, Session, SERVER_STATE_VERSION};

use crate::error::{Result, SamplerError};
use crate::sampler::Sampler;
use serde_json::{json, Value};
use std::io::{BufRead, Write};

/// Parses one request line and runs it. The envelope fields `op` and `seq` are taken out
/// first, so each op's body is checked strictly (unknown fields are errors).
fn handle(session: &mut Session, line: &str) -> (Result<Value>, Option<Value>) {
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
    (session.dispatch(&op, Value::Object(obj)), seq)
}

/// The response line of a request: its result object with `ok: true`, or `ok: false` and
/// the error; `seq` echoed when the request had one.
fn respond(result: Result<Value>, seq: Option<Value>) -> Value {
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
    resp
}

/// Serves requests from `reader` until end of input, writing one response line per request.
/// Only I/O failures end it with an error; bad requests (including lines that are not UTF-8)
/// are answered with `ok: false` and the server keeps serving.
pub fn serve<R: BufRead, W: Write>(
    mut reader: R,
    mut writer: W,
    sampler: &mut Sampler,
) -> Result<()> {
    let mut session = Session::new(sampler);
    let session = &mut session;
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| SamplerError::io("<protocol input>", e))?;
        if n == 0 {
            return Ok(());
        }
        line_no += 1;
        let resp = match std::str::from_utf8(&buf) {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => {
                let (result, seq) = handle(session, line);
                respond(result, seq)
            }
            Err(e) => respond(
                Err(SamplerError::InvalidArgument(format!(
                    "input line {line_no} is not UTF-8 ({e}); requests are JSON text"
                ))),
                None,
            ),
        };
        serde_json::to_writer(&mut writer, &resp)?;
        writer
            .write_all(b"\n")
            .and_then(|_| writer.flush())
            .map_err(|e| SamplerError::io("<protocol output>", e))?;
    }
}
