//! Request bodies of the protocol's ops, and outcome parsing. Bodies reject unknown fields,
//! so a misspelt key is an error naming it instead of being silently ignored.

use crate::error::{Result, SamplerError};
use crate::outcome::Outcome;
use serde::Deserialize;
use serde_json::Value;

/// Default reward threshold: a rollout whose reward is at least this counts as a success.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// `register`: the pool as explicit ids or as `count` (ids 0..count), optional embeddings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterReq {
    #[serde(default)]
    pub ids: Option<Vec<u32>>,
    #[serde(default)]
    pub count: Option<u32>,
    #[serde(default)]
    pub embeddings: Option<Vec<Vec<f32>>>,
}

/// `select`: `b` prompts from the registered pool, or from `candidates`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectReq {
    pub b: usize,
    #[serde(default)]
    pub candidates: Option<Vec<u32>>,
}

/// `observe` (commit a step) and `filter` (one roll-out round of a step, optional top-up).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomesReq {
    #[serde(default)]
    pub outcomes: Vec<Value>,
    #[serde(default)]
    pub threshold: Option<f64>,
    /// `filter` only: prompts to select for the next round.
    #[serde(default)]
    pub topup: Option<usize>,
    /// `filter` only: draw the top-up from these instead of the registered pool.
    #[serde(default)]
    pub candidates: Option<Vec<u32>>,
}

/// `predict` and `release`: a list of prompt ids.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdsReq {
    pub ids: Vec<u32>,
}

/// `embeddings`: one row per id.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsReq {
    pub ids: Vec<u32>,
    pub data: Vec<Vec<f32>>,
}

/// `save` / `load`: an optional path, and for `load` an optional inline state (kept as a raw
/// `Value` and parsed on its own, because the RNG state holds a u128 that serde's buffered
/// parsing cannot carry).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateReq {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub state: Option<Value>,
}

/// Parses an op's body; the error names the op and serde's reason (field, type).
pub fn parse<T: serde::de::DeserializeOwned>(op: &str, v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| SamplerError::InvalidArgument(format!("{op}: {e}")))
}

/// Flattens embedding rows into row-major data, checking one row per id and equal lengths.
pub fn embedding_rows(ids: &[u32], rows: &[Vec<f32>]) -> Result<Vec<f32>> {
    if ids.len() != rows.len() {
        return Err(SamplerError::InvalidArgument(format!(
            "embeddings: {} ids but {} rows",
            ids.len(),
            rows.len()
        )));
    }
    let dim = rows.first().map_or(0, Vec::len);
    if let Some(row) = rows.iter().find(|row| row.len() != dim) {
        return Err(SamplerError::InvalidArgument(format!(
            "embeddings: row of {} values, expected {dim}",
            row.len()
        )));
    }
    Ok(rows.concat())
}

/// One outcome: `[id, successes, rollouts]`, `{"id", "successes", "rollouts"}`, or
/// `{"id", "rewards": [r, ...]}` where a reward ≥ `threshold` counts as a success
/// (non-binary rewards).
pub fn parse_outcome(index: usize, v: &Value, threshold: f64) -> Result<Outcome> {
    let bad = |why: String| SamplerError::InvalidArgument(format!("outcome #{index}: {why}"));
    let uint = |v: &Value, what: &str| -> Result<u32> {
        v.as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| bad(format!("{what} must be a non-negative integer, got {v}")))
    };
    let o = match v {
        Value::Array(a) if a.len() == 3 => Outcome::new(
            uint(&a[0], "id")?,
            uint(&a[1], "successes")?,
            uint(&a[2], "rollouts")?,
        ),
        Value::Object(m) => {
            if let Some(k) = m
                .keys()
                .find(|k| !["id", "successes", "rollouts", "rewards"].contains(&k.as_str()))
            {
                return Err(bad(format!("unknown field {k:?}")));
            }
            let id = uint(m.get("id").ok_or_else(|| bad("missing id".into()))?, "id")?;
            match (m.get("successes"), m.get("rollouts"), m.get("rewards")) {
                (Some(s), Some(k), None) => {
                    Outcome::new(id, uint(s, "successes")?, uint(k, "rollouts")?)
                }
                (None, None, Some(Value::Array(rs))) => {
                    let mut wins = 0u32;
                    for r in rs {
                        let r = r
                            .as_f64()
                            .filter(|r| r.is_finite())
                            .ok_or_else(|| bad(format!("reward {r} is not a finite number")))?;
                        wins += u32::from(r >= threshold);
                    }
                    Outcome::new(id, wins, rs.len() as u32)
                }
                _ => {
                    return Err(bad(
                        "give either successes and rollouts, or a rewards list".into()
                    ))
                }
            }
        }
        other => {
            return Err(bad(format!(
                "expected [id, successes, rollouts] or an object, got {other}"
            )))
        }
    };
    o.validate().map_err(|e| bad(e.to_string()))?;
    Ok(o)
}

/// All outcomes of a request, with its threshold (default [`DEFAULT_THRESHOLD`]).
pub fn parse_outcomes(values: &[Value], threshold: Option<f64>) -> Result<Vec<Outcome>> {
    let threshold = threshold.unwrap_or(DEFAULT_THRESHOLD);
    if !threshold.is_finite() {
        return Err(SamplerError::InvalidArgument(format!(
            "threshold must be a finite number, got {threshold}"
        )));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| parse_outcome(i, v, threshold))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outcome_forms() {
        let t = DEFAULT_THRESHOLD;
        assert_eq!(
            parse_outcome(0, &json!([3, 2, 8]), t).unwrap(),
            Outcome::new(3, 2, 8)
        );
        let o = json!({"id": 4, "successes": 1, "rollouts": 2});
        assert_eq!(parse_outcome(0, &o, t).unwrap(), Outcome::new(4, 1, 2));
        // Rewards 0.2, 0.5, 0.9, 0.0 at threshold 0.5: two successes of four.
        let o = json!({"id": 5, "rewards": [0.2, 0.5, 0.9, 0.0]});
        assert_eq!(parse_outcome(0, &o, t).unwrap(), Outcome::new(5, 2, 4));
        assert_eq!(parse_outcome(0, &o, 0.95).unwrap(), Outcome::new(5, 0, 4));
        for bad in [
            json!([1, 9, 8]),
            json!([1, -1, 8]),
            json!({"id": 1, "rewards": [0.1, "x"]}),
            json!({"id": 1, "rewards": []}),
            json!({"id": 1, "successes": 1}),
            json!({"id": 1, "successes": 1, "rollouts": 2, "extra": 0}),
            json!("3,2,8"),
        ] {
            let e = parse_outcome(7, &bad, t).unwrap_err().to_string();
            assert!(e.contains("outcome #7"), "{bad}: {e}");
        }
    }
}
