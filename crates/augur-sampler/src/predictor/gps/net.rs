//! The GPS network: a two-hidden-layer SiLU MLP in candle with a hand-written AdamW, so that
//! weights and optimizer moments can be saved and restored bit-exactly.

use super::GpsConfig;
use crate::error::{Result, SamplerError};
use candle_core::{Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Uniform};

/// Maps candle errors into the sampler's error type.
pub(super) fn cerr(e: candle_core::Error) -> SamplerError {
    SamplerError::InvalidState(format!("gps (candle): {e}"))
}

/// The MLP and its AdamW moments.
pub(super) struct Net {
    pub(super) in_dim: usize,
    pub(super) params: Vec<Var>,
    pub(super) m: Vec<Tensor>,
    pub(super) v: Vec<Tensor>,
    pub(super) t: u64,
}

impl Net {
    fn shapes(in_dim: usize, h: usize) -> [(usize, usize); 6] {
        [(h, in_dim), (1, h), (h, h), (1, h), (1, h), (1, 1)]
    }

    pub(super) fn init(in_dim: usize, h: usize, rng: &mut ChaCha8Rng) -> Result<Self> {
        let vals = Self::shapes(in_dim, h)
            .iter()
            .enumerate()
            .map(|(i, &(r, c))| {
                if i % 2 == 1 {
                    return vec![0.0; r * c];
                }
                let bound = if i == 4 {
                    0.01
                } else {
                    (1.0 / c as f32).sqrt()
                };
                let u = Uniform::new_inclusive(-bound, bound).expect("bound > 0");
                (0..r * c).map(|_| u.sample(rng)).collect()
            })
            .collect();
        let zeros = Self::shapes(in_dim, h)
            .iter()
            .map(|&(r, c)| vec![0.0; r * c])
            .collect::<Vec<_>>();
        Self::from_vecs(in_dim, h, vals, zeros.clone(), zeros, 0)
    }

    pub(super) fn from_vecs(
        in_dim: usize,
        hidden: usize,
        p: Vec<Vec<f32>>,
        m: Vec<Vec<f32>>,
        v: Vec<Vec<f32>>,
        t: u64,
    ) -> Result<Self> {
        let shapes = Self::shapes(in_dim, hidden);
        let tensor = |x: &Vec<f32>, s: (usize, usize)| {
            if x.len() != s.0 * s.1 {
                return Err(SamplerError::InvalidState(format!(
                    "gps: parameter of {} values, expected {:?}",
                    x.len(),
                    s
                )));
            }
            Tensor::from_slice(x, s, &Device::Cpu).map_err(cerr)
        };
        if p.len() != 6 || m.len() != 6 || v.len() != 6 {
            return Err(SamplerError::InvalidState(
                "gps: expected 6 parameter tensors".into(),
            ));
        }
        let mut net = Net {
            in_dim,
            params: Vec::new(),
            m: Vec::new(),
            v: Vec::new(),
            t,
        };
        for i in 0..6 {
            net.params
                .push(Var::from_tensor(&tensor(&p[i], shapes[i])?).map_err(cerr)?);
            net.m.push(tensor(&m[i], shapes[i])?);
            net.v.push(tensor(&v[i], shapes[i])?);
        }
        Ok(net)
    }

    pub(super) fn to_vecs(ts: &[Tensor]) -> Result<Vec<Vec<f32>>> {
        ts.iter()
            .map(|t| t.flatten_all()?.to_vec1::<f32>())
            .collect::<candle_core::Result<_>>()
            .map_err(cerr)
    }

    /// Logits [n, 1] of inputs [n, in_dim].
    pub(super) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let p: Vec<&Tensor> = self.params.iter().map(|v| v.as_tensor()).collect();
        let h = x.matmul(&p[0].t()?)?.broadcast_add(p[1])?.silu()?;
        let h = h.matmul(&p[2].t()?)?.broadcast_add(p[3])?.silu()?;
        h.matmul(&p[4].t()?)?.broadcast_add(p[5])
    }

    /// One AdamW step on the rollout-weighted binomial NLL.
    pub(super) fn step(
        &mut self,
        x: &Tensor,
        s: &Tensor,
        k: &Tensor,
        total_k: f64,
        cfg: &GpsConfig,
    ) -> Result<f32> {
        let f = self.forward(x).map_err(cerr)?;
        let loss = (|| {
            let softplus = (f.relu()? + f.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?;
            let nll = ((softplus * k)? - (&f * s)?)?;
            nll.sum_all()?.affine(1.0 / total_k, 0.0)
        })()
        .map_err(cerr)?;
        let grads = loss.backward().map_err(cerr)?;
        self.t += 1;
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        let bc1 = 1.0 - b1.powi(self.t as i32);
        let bc2 = 1.0 - b2.powi(self.t as i32);
        for i in 0..self.params.len() {
            let p = &self.params[i];
            let Some(g) = grads.get(p.as_tensor()) else {
                continue;
            };
            (|| {
                self.m[i] = (self.m[i].affine(b1, 0.0)? + g.affine(1.0 - b1, 0.0)?)?;
                self.v[i] = (self.v[i].affine(b2, 0.0)? + g.sqr()?.affine(1.0 - b2, 0.0)?)?;
                let upd = (self.m[i].affine(1.0 / bc1, 0.0)?
                    / self.v[i].affine(1.0 / bc2, 0.0)?.sqrt()?.affine(1.0, eps)?)?;
                let new = (p.as_tensor().affine(1.0 - cfg.lr * cfg.weight_decay, 0.0)?
                    - upd.affine(cfg.lr, 0.0)?)?;
                p.set(&new)
            })()
            .map_err(cerr)?;
        }
        loss.to_scalar::<f32>().map_err(cerr)
    }
}
