//! What a protocol server remembers between requests, and one handler per op.
//!
//! - The sampler (predictor, acquisition, RNG, in-flight prompts).
//! - The registered pool: `select` draws from it, so a trainer sends it once instead of with
//!   every request; ids outside it are rejected as unknown.
//! - The current step's filter rounds (`filter`): outcomes held back until `observe` commits
//!   the step, so a DS/GRESO-style roll-out-then-filter loop is one optimizer step.
//!
//! In-flight prompts (selected, not yet observed or released) are never selected again, so
//! generate-ahead pipelines get disjoint batches.

use super::wire::{
    embedding_rows, parse, parse_outcomes, EmbeddingsReq, IdsReq, OutcomesReq, RegisterReq,
    SelectReq, StateReq,
};
use crate::error::{Result, SamplerError};
use crate::outcome::{validate_batch, Outcome, MAX_PROMPT_ID};
use crate::sampler::{Sampler, SamplerState};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::Path;

/// Version of [`ServerState`].
pub const SERVER_STATE_VERSION: u32 = 1;

/// What `save` writes: the sampler's state plus the server's own (pool, open filter round).
/// Embeddings are not included (send them again after `load`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerState {
    /// Layout version ([`SERVER_STATE_VERSION`]).
    pub version: u32,
    /// The sampler's exact-resume state (in-flight prompts included).
    pub sampler: SamplerState,
    /// The registered pool, if any.
    pub pool: Option<Vec<u32>>,
    /// Outcomes of the current step's filter rounds, not yet committed by `observe`.
    pub round: Vec<Outcome>,
}

/// Membership bitmap over prompt ids.
#[derive(Debug, Clone, Default)]
struct IdSet(Vec<u64>);

impl IdSet {
    fn of(ids: impl IntoIterator<Item = u32>) -> Self {
        let mut s = IdSet::default();
        for id in ids {
            s.insert(id);
        }
        s
    }
    /// Adds `id`; false if it was already there.
    fn insert(&mut self, id: u32) -> bool {
        let w = id as usize / 64;
        if self.0.len() <= w {
            self.0.resize(w + 1, 0);
        }
        let fresh = self.0[w] & (1 << (id % 64)) == 0;
        self.0[w] |= 1 << (id % 64);
        fresh
    }
    fn contains(&self, id: u32) -> bool {
        self.0
            .get(id as usize / 64)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }
}

/// A registered pool: its ids in the order given, and a membership bitmap.
struct Pool {
    ids: Vec<u32>,
    members: IdSet,
}

impl Pool {
    fn new(ids: Vec<u32>) -> Result<Self> {
        if ids.is_empty() {
            return Err(SamplerError::InvalidArgument(
                "register: the pool is empty".into(),
            ));
        }
        if let Some(bad) = ids.iter().find(|&&id| id > MAX_PROMPT_ID) {
            return Err(SamplerError::InvalidArgument(format!(
                "register: id {bad} > max {MAX_PROMPT_ID}"
            )));
        }
        let mut members = IdSet::default();
        if let Some(id) = ids.iter().find(|&&id| !members.insert(id)) {
            return Err(SamplerError::InvalidArgument(format!(
                "register: id {id} given twice"
            )));
        }
        Ok(Pool { ids, members })
    }
}

/// A protocol session over a sampler owned by the caller.
pub struct Session<'a> {
    sampler: &'a mut Sampler,
    pool: Option<Pool>,
    round: Vec<Outcome>,
}

impl<'a> Session<'a> {
    /// A session with no pool registered and no open round.
    pub fn new(sampler: &'a mut Sampler) -> Self {
        Session {
            sampler,
            pool: None,
            round: Vec::new(),
        }
    }

    /// Runs one op on its body (the request without `op` / `seq`).
    pub fn dispatch(&mut self, op: &str, v: Value) -> Result<Value> {
        match op {
            "register" => self.register(parse(op, v)?),
            "select" => {
                let r: SelectReq = parse(op, v)?;
                self.select(r.b, r.candidates.as_deref())
            }
            "predict" => self.predict(parse(op, v)?),
            "filter" => self.filter(parse(op, v)?),
            "observe" => self.observe(parse(op, v)?),
            "release" => {
                let r: IdsReq = parse(op, v)?;
                self.check_known(&r.ids)?;
                Ok(json!({"released": self.sampler.release(&r.ids)}))
            }
            "embeddings" => {
                let r: EmbeddingsReq = parse(op, v)?;
                self.check_known(&r.ids)?;
                let flat = embedding_rows(&r.ids, &r.data)?;
                self.sampler.set_embeddings(&r.ids, &flat)?;
                Ok(json!({"count": r.ids.len()}))
            }
            "save" => self.save(parse(op, v)?),
            "load" => self.load(parse(op, v)?),
            "info" => Ok(json!({
                "name": self.sampler.name(),
                "step": self.sampler.step(),
                "pool": self.pool.as_ref().map(|p| p.ids.len()),
                "in_flight": self.sampler.in_flight().count(),
                "round": self.round.len(),
            })),
            other => Err(SamplerError::InvalidArgument(format!(
                "unknown op {other:?} (register, select, predict, filter, observe, release, \
                 embeddings, save, load, info)"
            ))),
        }
    }

    /// With a registered pool, every id must be in it.
    fn check_known(&self, ids: &[u32]) -> Result<()> {
        let Some(pool) = &self.pool else {
            return Ok(());
        };
        match ids.iter().find(|&&id| !pool.members.contains(id)) {
            Some(id) => Err(SamplerError::InvalidArgument(format!(
                "unknown id {id}: not in the registered pool of {} prompts",
                pool.ids.len()
            ))),
            None => Ok(()),
        }
    }

    fn register(&mut self, r: RegisterReq) -> Result<Value> {
        let ids = match (r.ids, r.count) {
            (Some(ids), None) => ids,
            (None, Some(n)) => (0..n).collect(),
            _ => {
                return Err(SamplerError::InvalidArgument(
                    "register needs exactly one of ids or count".into(),
                ))
            }
        };
        let pool = Pool::new(ids)?;
        if let Some(rows) = &r.embeddings {
            let flat = embedding_rows(&pool.ids, rows)?;
            self.sampler.set_embeddings(&pool.ids, &flat)?;
        }
        let count = pool.ids.len();
        self.pool = Some(pool);
        Ok(json!({"count": count}))
    }

    /// `b` prompts from `candidates` (or the pool), never one in flight or already rolled
    /// out in this step's filter rounds.
    fn select(&mut self, b: usize, candidates: Option<&[u32]>) -> Result<Value> {
        let from: &[u32] = match (candidates, &self.pool) {
            (Some(c), _) => {
                self.check_known(c)?;
                c
            }
            (None, Some(p)) => &p.ids,
            (None, None) => {
                return Err(SamplerError::InvalidArgument(
                    "select before register: register the pool first, or give candidates".into(),
                ))
            }
        };
        let busy = IdSet::of(
            self.sampler
                .in_flight()
                .chain(self.round.iter().map(|o| o.id)),
        );
        let free: Vec<u32>;
        let pool = if busy.0.is_empty() {
            from
        } else {
            free = from
                .iter()
                .copied()
                .filter(|&id| !busy.contains(id))
                .collect();
            &free
        };
        if pool.len() < b {
            return Err(SamplerError::InvalidArgument(format!(
                "select: b={b} but only {} of {} candidates are not in flight \
                 (observe or release in-flight prompts first)",
                pool.len(),
                from.len()
            )));
        }
        let s = self.sampler.select(pool, b)?;
        Ok(json!({"ids": s.ids, "predicted": s.predicted}))
    }

    fn predict(&mut self, r: IdsReq) -> Result<Value> {
        self.check_known(&r.ids)?;
        if let Some(bad) = r.ids.iter().find(|&&id| id > MAX_PROMPT_ID) {
            return Err(SamplerError::InvalidArgument(format!(
                "predict: id {bad} > max {MAX_PROMPT_ID}"
            )));
        }
        Ok(serde_json::to_value(self.sampler.estimate(&r.ids)?)?)
    }

    /// One roll-out round of the current step: holds its outcomes until `observe`, says which
    /// groups carry signal (0 < s < k), and optionally selects the next round's prompts.
    fn filter(&mut self, r: OutcomesReq) -> Result<Value> {
        let outs = parse_outcomes(&r.outcomes, r.threshold)?;
        self.check_known(&outs.iter().map(|o| o.id).collect::<Vec<_>>())?;
        let mut all = self.round.clone();
        all.extend_from_slice(&outs);
        validate_batch(&all)
            .map_err(|e| SamplerError::InvalidArgument(format!("filter: {e} (this step)")))?;
        let keep: Vec<u32> = outs
            .iter()
            .filter(|o| o.is_effective())
            .map(|o| o.id)
            .collect();
        let dropped: Vec<u32> = outs
            .iter()
            .filter(|o| !o.is_effective())
            .map(|o| o.id)
            .collect();
        // The round is held before the top-up, so the top-up never repeats a rolled-out prompt.
        let previous = std::mem::replace(&mut self.round, all);
        let mut topup = json!({});
        if let Some(n) = r.topup.filter(|&n| n > 0) {
            topup = match self.select(n, r.candidates.as_deref()) {
                Ok(t) => t,
                Err(e) => {
                    self.round = previous;
                    return Err(e);
                }
            };
        } else if r.candidates.is_some() {
            self.round = previous;
            return Err(SamplerError::InvalidArgument(
                "filter: candidates given without topup".into(),
            ));
        }
        let kept_total = self.round.iter().filter(|o| o.is_effective()).count();
        let mut resp = json!({
            "keep": keep,
            "dropped": dropped,
            "kept_total": kept_total,
            "rolled_out_total": self.round.len(),
        });
        if let (Value::Object(m), Value::Object(t)) = (&mut resp, topup) {
            m.extend(t);
        }
        Ok(resp)
    }

    /// Commits the step: this request's outcomes plus any held by `filter` rounds.
    fn observe(&mut self, r: OutcomesReq) -> Result<Value> {
        if r.topup.is_some() || r.candidates.is_some() {
            return Err(SamplerError::InvalidArgument(
                "observe takes outcomes and threshold only (topup belongs to filter)".into(),
            ));
        }
        let outs = parse_outcomes(&r.outcomes, r.threshold)?;
        self.check_known(&outs.iter().map(|o| o.id).collect::<Vec<_>>())?;
        let mut all = self.round.clone();
        all.extend(outs);
        let t = self.sampler.observe(&all)?;
        self.round.clear();
        Ok(json!({"telemetry": serde_json::to_value(t)?}))
    }

    fn state(&self) -> Result<ServerState> {
        Ok(ServerState {
            version: SERVER_STATE_VERSION,
            sampler: self.sampler.state()?,
            pool: self.pool.as_ref().map(|p| p.ids.clone()),
            round: self.round.clone(),
        })
    }

    fn save(&mut self, r: StateReq) -> Result<Value> {
        if r.state.is_some() {
            return Err(SamplerError::InvalidArgument("save takes no state".into()));
        }
        let st = self.state()?;
        let Some(path) = r.path else {
            return Ok(json!({"state": serde_json::to_value(st)?}));
        };
        let path = Path::new(&path);
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec(&st)?;
        std::fs::write(&tmp, bytes).map_err(|e| SamplerError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| SamplerError::io(path, e))?;
        Ok(json!({}))
    }

    /// Restores a [`ServerState`], or a bare sampler state (older servers, `augur grpo`'s
    /// sampler), which leaves the pool and round as they are.
    fn load(&mut self, r: StateReq) -> Result<Value> {
        let (value, origin) = match (r.path, r.state) {
            (Some(p), None) => {
                let bytes = std::fs::read(&p).map_err(|e| SamplerError::io(&p, e))?;
                let v: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| SamplerError::InvalidState(format!("{p}: {e}")))?;
                (v, p)
            }
            (None, Some(s)) => (s, "load".to_string()),
            _ => {
                return Err(SamplerError::InvalidArgument(
                    "load needs exactly one of path or state".into(),
                ))
            }
        };
        let bad = |e: serde_json::Error| SamplerError::InvalidState(format!("{origin}: {e}"));
        if value.get("sampler").is_none() {
            let st: SamplerState = serde_json::from_value(value).map_err(bad)?;
            self.sampler.load_state(st)?;
            return Ok(json!({}));
        }
        let st: ServerState = serde_json::from_value(value).map_err(bad)?;
        if st.version != SERVER_STATE_VERSION {
            return Err(SamplerError::InvalidState(format!(
                "{origin}: server state version {} (expected {SERVER_STATE_VERSION})",
                st.version
            )));
        }
        let pool = st.pool.map(Pool::new).transpose()?;
        validate_batch(&st.round)?;
        self.sampler.load_state(st.sampler)?;
        self.pool = pool;
        self.round = st.round;
        Ok(json!({}))
    }
}
