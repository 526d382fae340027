//! GPS (generalizable prompt-predictive model, ICML-26, arXiv 2602.01970): one small neural
//! network shared by all prompts, so prompts never rolled out still get a prediction.
//!
//! Model: p̂ = σ(MLP([standardise(e_i) ; c])), a two-hidden-layer SiLU MLP in candle (CPU).
//! - e_i: the prompt's embedding from the caller ([`crate::embedding`]), standardised per
//!   dimension with statistics frozen at the first update.
//! - c: the latent *training-state* context, inferred from the latest batch's outcomes:
//!   `[mean success, effective ratio, EMA mean success, EMA effective ratio, mean residual]`,
//!   where the residual is observed − predicted success rate of that batch (how far the policy
//!   moved since the model last saw it). Each training pair keeps the context it was selected
//!   under, so the model learns how difficulty shifts as training proceeds.
//!
//! The paper infers that latent with a variational posterior; here it is a deterministic
//! summary (cheap, exactly resumable), which is the part of the design this crate simplifies.
//!
//! Training: after each `observe`, `steps_per_update` AdamW steps, each on `batch_size` pairs
//! drawn (seeded) from a FIFO replay buffer of the last `buffer_size` (prompt, s, k, context)
//! tuples (`batch_size = 0`: the whole buffer every step), with the binomial
//! log-likelihood Σ k·softplus(f) − s·f / Σ k (BCE weighted by rollouts). Weights are
//! initialised from a seeded ChaCha8 stream and AdamW is written out here, so weights, moments,
//! buffer and RNG all go through [`Predictor::save`] and resume bit-exactly.
//!
//! Until the first update the prediction is the prior p = 0.5. Cost: predict is one forward
//! pass, O(n·(d+5)·h); observe is O(buffer·d + steps·batch_size·(d+5)·h).

mod net;

use super::{check_len, PredictCtx, Predictor, Quantity};
use crate::embedding::{read, SharedEmbeddings};
use crate::error::{Result, SamplerError};
use crate::outcome::{validate_batch, Outcome};
use candle_core::{Device, Tensor};
use net::{cerr, Net};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Size of the training-state context vector.
pub const CONTEXT_DIM: usize = 5;
const PREDICT_CHUNK: usize = 16384;

/// How the diversity term of the GPS acquisition aggregates cosine distances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DiversityMode {
    /// Distance to the nearest anchor (chosen or recent prompt).
    #[default]
    Min,
    /// Mean distance to all anchors.
    Mean,
}

/// The `[gps]` config section: the predictor and its diversity-aware acquisition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpsConfig {
    /// Expected embedding dimension; 0 = whatever is registered first.
    pub embedding_dim: usize,
    /// Hidden width of both MLP layers.
    pub hidden: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// AdamW steps after each observed batch.
    pub steps_per_update: usize,
    /// Replay buffer capacity (most recent (prompt, outcome) pairs).
    pub buffer_size: usize,
    /// Pairs per AdamW step, drawn without replacement from the buffer (0 = the whole buffer).
    pub batch_size: usize,
    /// Decay of the EMA parts of the context.
    pub context_ema: f32,
    /// Weight λ_div of the diversity term in the acquisition.
    pub lambda_div: f32,
    /// Min or mean cosine distance.
    pub diversity: DiversityMode,
    /// Recent batches whose prompts anchor the diversity term.
    pub window: usize,
}

impl Default for GpsConfig {
    fn default() -> Self {
        GpsConfig {
            embedding_dim: 0,
            hidden: 64,
            lr: 3e-3,
            weight_decay: 1e-4,
            steps_per_update: 8,
            buffer_size: 2048,
            batch_size: 256,
            context_ema: 0.9,
            lambda_div: 0.02,
            diversity: DiversityMode::Min,
            window: 4,
        }
    }
}

impl GpsConfig {
    /// Rejects unusable values with the field name in the message.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(SamplerError::InvalidConfig(format!("gps: {m}")));
        if self.hidden == 0 || self.hidden > 4096 {
            return bad(&format!("hidden {} not in 1..=4096", self.hidden));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(&format!("lr {} must be > 0", self.lr));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(&format!("weight_decay {} must be >= 0", self.weight_decay));
        }
        if self.steps_per_update == 0 || self.buffer_size == 0 {
            return bad("steps_per_update and buffer_size must be >= 1");
        }
        if !(0.0..1.0).contains(&self.context_ema) {
            return bad(&format!("context_ema {} not in [0, 1)", self.context_ema));
        }
        if !(self.lambda_div >= 0.0 && self.lambda_div.is_finite()) {
            return bad(&format!("lambda_div {} must be >= 0", self.lambda_div));
        }
        Ok(())
    }
}

/// One replay-buffer entry: a prompt, its outcome, and the context it was selected under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pair {
    id: u32,
    s: u32,
    k: u32,
    ctx: [f32; CONTEXT_DIM],
}

/// Serialised GPS state (weights, AdamW moments, buffer, context, RNG).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GpsState {
    in_dim: usize,
    hidden: usize,
    params: Option<Vec<Vec<f32>>>,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: u64,
    norm: Option<(Vec<f32>, Vec<f32>)>,
    buffer: Vec<Pair>,
    context: [f32; CONTEXT_DIM],
    rng: ChaCha8Rng,
    last_loss: Option<f32>,
}

/// The GPS predictor. Embeddings come from a [`SharedEmbeddings`] table that the caller fills
/// via [`GpsPredictor::set_embeddings`] (or [`crate::Sampler::set_embeddings`]).
pub struct GpsPredictor {
    cfg: GpsConfig,
    emb: SharedEmbeddings,
    net: Option<Net>,
    norm: Option<(Vec<f32>, Vec<f32>)>,
    buffer: VecDeque<Pair>,
    context: [f32; CONTEXT_DIM],
    rng: ChaCha8Rng,
    last_loss: Option<f32>,
}

impl GpsPredictor {
    /// A fresh predictor reading embeddings from `emb`; weights are drawn from `seed` at the
    /// first update.
    pub fn new(cfg: GpsConfig, emb: SharedEmbeddings, seed: u64) -> Result<Self> {
        cfg.validate()?;
        {
            let t = read(&emb)?;
            if cfg.embedding_dim > 0 && t.dim() > 0 && t.dim() != cfg.embedding_dim {
                return Err(SamplerError::InvalidConfig(format!(
                    "gps: embedding_dim {} but the table holds dimension {}",
                    cfg.embedding_dim,
                    t.dim()
                )));
            }
        }
        Ok(GpsPredictor {
            cfg,
            emb,
            net: None,
            norm: None,
            buffer: VecDeque::new(),
            context: [0.5, 0.0, 0.5, 0.0, 0.0],
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x6795_0000_6795),
            last_loss: None,
        })
    }

    /// Registers embeddings (row-major, `ids.len() × dim`) in the shared table.
    pub fn set_embeddings(&self, ids: &[u32], data: &[f32]) -> Result<()> {
        let mut t = crate::embedding::write(&self.emb)?;
        if self.cfg.embedding_dim > 0 && t.dim() == 0 && !ids.is_empty() {
            let dim = data.len() / ids.len();
            if dim != self.cfg.embedding_dim {
                return Err(SamplerError::InvalidArgument(format!(
                    "gps: embeddings of dimension {dim}, config says embedding_dim {}",
                    self.cfg.embedding_dim
                )));
            }
        }
        t.set(ids, data)
    }

    /// The current training-state context vector.
    pub fn context(&self) -> [f32; CONTEXT_DIM] {
        self.context
    }

    /// Training loss after the last update (None before the first).
    pub fn last_loss(&self) -> Option<f32> {
        self.last_loss
    }

    /// Pairs currently in the replay buffer.
    pub fn buffer_len(&self) -> usize {
        self.buffer.len()
    }

    /// Model inputs for `ids` under context `ctx`(one per row, or one shared), as [n, d+5].
    fn inputs(&self, ids: &[u32], ctxs: &[[f32; CONTEXT_DIM]]) -> Result<Tensor> {
        let t = read(&self.emb)?;
        let d = t.dim();
        let fresh;
        let (mean, inv) = match &self.norm {
            Some((m, i)) => (m, i),
            None => {
                fresh = t.standardisation();
                (&fresh.0, &fresh.1)
            }
        };
        if let Some(net) = &self.net {
            if net.in_dim != d + CONTEXT_DIM {
                return Err(SamplerError::InvalidState(format!(
                    "gps: model expects embeddings of dimension {}, table has {d}",
                    net.in_dim - CONTEXT_DIM
                )));
            }
        }
        let w = d + CONTEXT_DIM;
        let mut x = Vec::with_capacity(ids.len() * w);
        for (i, &id) in ids.iter().enumerate() {
            let e = t.require(id)?;
            x.extend(e.iter().zip(mean).zip(inv).map(|((v, m), s)| (v - m) * s));
            x.extend_from_slice(&ctxs[i.min(ctxs.len() - 1)]);
        }
        Tensor::from_vec(x, (ids.len(), w), &Device::Cpu).map_err(cerr)
    }

    /// Predicted success rates of `ids` under the current context (0.5 before training).
    pub fn predict_mean(&self, ids: &[u32], out: &mut [f32]) -> Result<()> {
        check_len(ids, out)?;
        let Some(net) = &self.net else {
            // Still check registration, so a missing embedding surfaces at the first select.
            let t = read(&self.emb)?;
            for &id in ids {
                t.require(id)?;
            }
            out.fill(0.5);
            return Ok(());
        };
        for (ic, oc) in ids.chunks(PREDICT_CHUNK).zip(out.chunks_mut(PREDICT_CHUNK)) {
            let x = self.inputs(ic, &[self.context])?;
            let p = (|| {
                candle_nn::ops::sigmoid(&net.forward(&x)?)?
                    .flatten_all()?
                    .to_vec1::<f32>()
            })()
            .map_err(cerr)?;
            oc.copy_from_slice(&p);
        }
        Ok(())
    }

    fn train(&mut self) -> Result<()> {
        let ids: Vec<u32> = self.buffer.iter().map(|p| p.id).collect();
        let ctxs: Vec<[f32; CONTEXT_DIM]> = self.buffer.iter().map(|p| p.ctx).collect();
        let x = self.inputs(&ids, &ctxs)?;
        let n = ids.len();
        let s: Vec<f32> = self.buffer.iter().map(|p| p.s as f32).collect();
        let k: Vec<f32> = self.buffer.iter().map(|p| p.k as f32).collect();
        let kv = k.clone();
        let total_k: f64 = k.iter().map(|&x| x as f64).sum();
        let s = Tensor::from_vec(s, (n, 1), &Device::Cpu).map_err(cerr)?;
        let k = Tensor::from_vec(k, (n, 1), &Device::Cpu).map_err(cerr)?;
        let net = self.net.as_mut().expect("net built before training");
        let mut loss = 0.0;
        let m = self.cfg.batch_size;
        for _ in 0..self.cfg.steps_per_update {
            if m == 0 || m >= n {
                loss = net.step(&x, &s, &k, total_k.max(1.0), &self.cfg)?;
                continue;
            }
            let mut rows: Vec<u32> = rand::seq::index::sample(&mut self.rng, n, m)
                .into_iter()
                .map(|i| i as u32)
                .collect();
            rows.sort_unstable();
            let sub_k: f64 = rows.iter().map(|&r| kv[r as usize] as f64).sum();
            let idx = Tensor::from_vec(rows, m, &Device::Cpu).map_err(cerr)?;
            let pick = |t: &Tensor| t.index_select(&idx, 0).map_err(cerr);
            loss = net.step(
                &pick(&x)?,
                &pick(&s)?,
                &pick(&k)?,
                sub_k.max(1.0),
                &self.cfg,
            )?;
        }
        self.last_loss = Some(loss);
        Ok(())
    }
}

impl Predictor for GpsPredictor {
    fn name(&self) -> &str {
        "gps"
    }

    fn predict(&self, ids: &[u32], q: Quantity, ctx: PredictCtx, out: &mut [f32]) -> Result<()> {
        self.predict_mean(ids, out)?;
        match q {
            // A point predictor: its "draw" is its mean and it reports no epistemic spread.
            Quantity::Mean | Quantity::Sample => {}
            Quantity::Std => out.fill(0.0),
            Quantity::Partial => {
                let k = ctx.k as i32;
                for p in out.iter_mut() {
                    *p = 1.0 - p.powi(k) - (1.0 - *p).powi(k);
                }
            }
        }
        Ok(())
    }

    fn observe(&mut self, outcomes: &[Outcome]) -> Result<()> {
        validate_batch(outcomes)?;
        if outcomes.is_empty() {
            return Ok(());
        }
        let ids: Vec<u32> = outcomes.iter().map(|o| o.id).collect();
        {
            let t = read(&self.emb)?;
            for &id in &ids {
                t.require(id)?;
            }
            if self.cfg.embedding_dim > 0 && t.dim() != self.cfg.embedding_dim {
                return Err(SamplerError::InvalidArgument(format!(
                    "gps: embeddings have dimension {}, config says embedding_dim {}",
                    t.dim(),
                    self.cfg.embedding_dim
                )));
            }
        }
        let mut pred = vec![0.0; ids.len()];
        self.predict_mean(&ids, &mut pred)?;
        if self.net.is_none() {
            let t = read(&self.emb)?;
            self.norm = Some(t.standardisation());
            let in_dim = t.dim() + CONTEXT_DIM;
            drop(t);
            self.net = Some(Net::init(in_dim, self.cfg.hidden, &mut self.rng)?);
        }
        for o in outcomes {
            self.buffer.push_back(Pair {
                id: o.id,
                s: o.successes,
                k: o.rollouts,
                ctx: self.context,
            });
        }
        while self.buffer.len() > self.cfg.buffer_size {
            self.buffer.pop_front();
        }
        let n = outcomes.len() as f32;
        let mean_rate = outcomes.iter().map(|o| o.rate()).sum::<f32>() / n;
        let eff = outcomes.iter().filter(|o| o.is_effective()).count() as f32 / n;
        let resid = outcomes
            .iter()
            .zip(&pred)
            .map(|(o, p)| o.rate() - p)
            .sum::<f32>()
            / n;
        let a = self.cfg.context_ema;
        self.context = [
            mean_rate,
            eff,
            a * self.context[2] + (1.0 - a) * mean_rate,
            a * self.context[3] + (1.0 - a) * eff,
            resid,
        ];
        self.train()
    }

    fn save(&self) -> Result<serde_json::Value> {
        let st = GpsState {
            in_dim: self.net.as_ref().map_or(0, |n| n.in_dim),
            hidden: self.cfg.hidden,
            params: match &self.net {
                Some(n) => Some(Net::to_vecs(
                    &n.params
                        .iter()
                        .map(|v| v.as_tensor().clone())
                        .collect::<Vec<_>>(),
                )?),
                None => None,
            },
            m: self
                .net
                .as_ref()
                .map_or(Ok(vec![]), |n| Net::to_vecs(&n.m))?,
            v: self
                .net
                .as_ref()
                .map_or(Ok(vec![]), |n| Net::to_vecs(&n.v))?,
            t: self.net.as_ref().map_or(0, |n| n.t),
            norm: self.norm.clone(),
            buffer: self.buffer.iter().cloned().collect(),
            context: self.context,
            rng: self.rng.clone(),
            last_loss: self.last_loss,
        };
        Ok(serde_json::to_value(st)?)
    }

    fn load(&mut self, state: serde_json::Value) -> Result<()> {
        let st: GpsState = serde_json::from_value(state)
            .map_err(|e| SamplerError::InvalidState(format!("gps state: {e}")))?;
        if st.hidden != self.cfg.hidden {
            return Err(SamplerError::InvalidState(format!(
                "gps state has hidden {}, config has {}",
                st.hidden, self.cfg.hidden
            )));
        }
        self.net = match st.params {
            Some(p) => Some(Net::from_vecs(st.in_dim, st.hidden, p, st.m, st.v, st.t)?),
            None => None,
        };
        self.norm = st.norm;
        self.buffer = st.buffer.into();
        self.context = st.context;
        self.rng = st.rng;
        self.last_loss = st.last_loss;
        Ok(())
    }

    fn embeddings(&self) -> Option<SharedEmbeddings> {
        Some(self.emb.clone())
    }
}
