//! Prompt embeddings supplied by the caller, shared by the GPS predictor and the diversity rule.
//!
//! The sampler never sees text. A caller that wants GPS computes one f32 vector per prompt and
//! registers it with [`crate::Sampler::set_embeddings`]. augur's choice (see `augur-train`) is
//! the policy's own *frozen base model*: mean-pooled last-layer hidden states over the prompt
//! tokens, computed once per prompt before training and cached next to the dataset. That needs
//! no second model, and the base model's representation is what determines difficulty for the
//! policy at step 0; any other small embedding model works the same way.
//!
//! Embeddings are not part of the sampler's saved state (they can be large and the caller
//! already caches them): after [`crate::Sampler::load_state`], register them again.

use crate::error::{Result, SamplerError};
use std::sync::{Arc, RwLock};

/// A shared, growable id → embedding table.
pub type SharedEmbeddings = Arc<RwLock<EmbeddingTable>>;

const MISSING: u32 = u32::MAX;

/// Row-major embeddings of dimension `dim`, addressed by prompt id.
#[derive(Debug, Clone, Default)]
pub struct EmbeddingTable {
    dim: usize,
    data: Vec<f32>,
    row_of: Vec<u32>,
}

impl EmbeddingTable {
    /// An empty table; the dimension is fixed by `expected_dim` (0 = by the first registration).
    pub fn new(expected_dim: usize) -> Self {
        EmbeddingTable {
            dim: expected_dim,
            ..Default::default()
        }
    }

    /// A new shared handle.
    pub fn shared(expected_dim: usize) -> SharedEmbeddings {
        Arc::new(RwLock::new(Self::new(expected_dim)))
    }

    /// Embedding dimension (0 while unknown).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of registered prompts.
    pub fn len(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Registers (or replaces) the embeddings of `ids`; `data` is row-major, `ids.len() × dim`.
    pub fn set(&mut self, ids: &[u32], data: &[f32]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        if !data.len().is_multiple_of(ids.len()) || data.is_empty() {
            return Err(SamplerError::InvalidArgument(format!(
                "embeddings: {} values for {} ids is not a whole number of rows",
                data.len(),
                ids.len()
            )));
        }
        let dim = data.len() / ids.len();
        if self.dim == 0 {
            self.dim = dim;
        } else if dim != self.dim {
            return Err(SamplerError::InvalidArgument(format!(
                "embeddings: got dimension {dim}, expected {}",
                self.dim
            )));
        }
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            return Err(SamplerError::InvalidArgument(format!(
                "embeddings: non-finite value for prompt {}",
                ids[i / dim]
            )));
        }
        for (&id, row) in ids.iter().zip(data.chunks_exact(dim)) {
            if id > crate::outcome::MAX_PROMPT_ID {
                return Err(SamplerError::InvalidArgument(format!(
                    "embeddings: prompt id {id} too large"
                )));
            }
            crate::prompt_table::ensure_len(&mut self.row_of, id, MISSING)?;
            match self.row_of[id as usize] {
                MISSING => {
                    self.row_of[id as usize] = (self.data.len() / dim) as u32;
                    self.data.extend_from_slice(row);
                }
                r => {
                    let r = r as usize * dim;
                    self.data[r..r + dim].copy_from_slice(row);
                }
            }
        }
        Ok(())
    }

    /// The embedding of `id`, if registered.
    pub fn get(&self, id: u32) -> Option<&[f32]> {
        match *self.row_of.get(id as usize)? {
            MISSING => None,
            r => Some(&self.data[r as usize * self.dim..(r as usize + 1) * self.dim]),
        }
    }

    /// The embedding of `id`, or an error telling the caller to register it.
    pub fn require(&self, id: u32) -> Result<&[f32]> {
        self.get(id).ok_or_else(|| {
            SamplerError::InvalidArgument(format!(
                "prompt {id} has no embedding: register it with Sampler::set_embeddings"
            ))
        })
    }

    /// Per-dimension mean and 1/std over all registered rows, summed in id order (so the
    /// result does not depend on the order of registration).
    pub fn standardisation(&self) -> (Vec<f32>, Vec<f32>) {
        let d = self.dim;
        let (mut s, mut s2, mut n) = (vec![0f64; d], vec![0f64; d], 0f64);
        for &r in self.row_of.iter().filter(|&&r| r != MISSING) {
            let row = &self.data[r as usize * d..(r as usize + 1) * d];
            for j in 0..d {
                s[j] += row[j] as f64;
                s2[j] += (row[j] as f64).powi(2);
            }
            n += 1.0;
        }
        let n = n.max(1.0);
        let mean: Vec<f32> = s.iter().map(|x| (x / n) as f32).collect();
        let inv: Vec<f32> = s
            .iter()
            .zip(&s2)
            .map(|(a, b)| {
                let var = (b / n - (a / n).powi(2)).max(0.0);
                (1.0 / (var.sqrt() + 1e-6)) as f32
            })
            .collect();
        (mean, inv)
    }
}

/// Locks a shared table for reading, mapping poisoning to an error.
pub(crate) fn read(t: &SharedEmbeddings) -> Result<std::sync::RwLockReadGuard<'_, EmbeddingTable>> {
    t.read()
        .map_err(|_| SamplerError::InvalidState("embedding table lock poisoned".into()))
}

/// Locks a shared table for writing, mapping poisoning to an error.
pub(crate) fn write(
    t: &SharedEmbeddings,
) -> Result<std::sync::RwLockWriteGuard<'_, EmbeddingTable>> {
    t.write()
        .map_err(|_| SamplerError::InvalidState("embedding table lock poisoned".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_replace_and_check_dims() {
        let mut t = EmbeddingTable::new(0);
        t.set(&[3, 1], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(t.dim(), 2);
        assert_eq!(t.get(1), Some(&[3.0, 4.0][..]));
        t.set(&[3], &[5.0, 6.0]).unwrap();
        assert_eq!(t.get(3), Some(&[5.0, 6.0][..]));
        assert_eq!(t.len(), 2);
        assert!(t.get(0).is_none() && t.require(7).is_err());
        assert!(t.set(&[4], &[1.0, 2.0, 3.0]).is_err(), "wrong dim");
        assert!(t.set(&[4, 5], &[1.0, 2.0, 3.0]).is_err(), "ragged");
        assert!(t.set(&[4], &[f32::NAN, 0.0]).is_err());
        let (m, inv) = t.standardisation();
        assert_eq!(m, vec![4.0, 5.0]);
        assert!((inv[0] - 1.0).abs() < 1e-4);
        let mut fixed = EmbeddingTable::new(3);
        assert!(fixed.set(&[0], &[1.0, 2.0]).is_err());
    }
}
