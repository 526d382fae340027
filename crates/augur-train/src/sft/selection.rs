//! Online batch selection: of a step's N candidates, which K it trains on.
//!
//! - `uniform`: K at random (seeded by `selection.seed` and the step); nothing is scored.
//! - `maxloss`: the K with the highest mean token loss under the policy.
//! - `rho`: RHO-lite, the K with the highest policy loss minus reference loss (adapters
//!   off): what the policy has not learnt yet but is learnable.
//! - `uds`: the K with the highest `s_intra + α·s_inter` ([`super::uds`]); the chosen
//!   examples' sketches then enter the diversity buffer.
//!
//! Scoring forwards run without gradients, in micro-batches of `train.micro_batch_size` of
//! candidates of similar length (fewer padding positions run), each score returned to its
//! candidate's place.

use augur_model::{DecoderModel, ForwardOpts, Grad, LogitsAt};
use candle_core::{DType, IndexOp};

use super::config::{SelectionMethod, SelectionSection};
use super::data::Example;
use super::loss::{example_losses, pack};
use super::uds::{nuclear_norm, DiversityBuffer, Projector};
use crate::grpo::data::SplitMix64;
use crate::metrics::SelectionMetrics;
use crate::Result;

/// The selection method with its state (UDS: the sketch and the buffer).
pub struct Selector {
    cfg: SelectionSection,
    projector: Option<Projector>,
    pub buffer: DiversityBuffer,
}

/// A step's choice.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    /// Dataset indices of the examples to train on, in candidate order.
    pub chosen: Vec<usize>,
    /// Score means of the chosen and of all candidates, UDS terms.
    pub telemetry: SelectionMetrics,
}

/// Per-candidate UDS terms.
struct UdsTerms {
    intra: Vec<f64>,
    inter: Vec<f64>,
    sketches: Vec<Vec<f32>>,
}

impl Selector {
    /// `vocab`: the model's logits width; `max_len`: `data.max_seq_len`.
    pub fn new(cfg: &SelectionSection, vocab: usize, max_len: usize) -> Self {
        Self {
            projector: (cfg.method == SelectionMethod::Uds)
                .then(|| Projector::new(vocab, max_len, cfg.seed)),
            buffer: DiversityBuffer::new(cfg.buffer),
            cfg: cfg.clone(),
        }
    }

    /// Chooses `selection.keep` of `candidates` (dataset indices into `examples`).
    pub fn choose(
        &mut self,
        model: &DecoderModel,
        examples: &[Example],
        candidates: &[usize],
        step: u64,
        micro: usize,
        pad_id: u32,
    ) -> Result<Choice> {
        let k = self.cfg.keep.min(candidates.len());
        let rows: Vec<&Example> = candidates.iter().map(|&i| &examples[i]).collect();
        let (scores, uds) = match self.cfg.method {
            SelectionMethod::Uniform => {
                let mut rng = SplitMix64(self.cfg.seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let mut order: Vec<usize> = (0..rows.len()).collect();
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i + 1));
                }
                let mut picked = order[..k].to_vec();
                picked.sort_unstable();
                return Ok(Choice {
                    chosen: picked.iter().map(|&p| candidates[p]).collect(),
                    telemetry: SelectionMetrics::default(),
                });
            }
            SelectionMethod::Maxloss => (losses(model, &rows, micro, pad_id, true)?, None),
            SelectionMethod::Rho => {
                let policy = losses(model, &rows, micro, pad_id, true)?;
                let reference = losses(model, &rows, micro, pad_id, false)?;
                let s = policy.iter().zip(&reference).map(|(p, r)| p - r).collect();
                (s, None)
            }
            SelectionMethod::Uds => {
                let terms = self.uds_terms(model, &rows, micro, pad_id)?;
                let s = terms
                    .intra
                    .iter()
                    .zip(&terms.inter)
                    .map(|(a, b)| a + self.cfg.alpha * b)
                    .collect();
                (s, Some(terms))
            }
        };
        let picked = top_k(&scores, k);
        let mean =
            |v: &[f64], at: &[usize]| at.iter().map(|&i| v[i]).sum::<f64>() / at.len() as f64;
        let all: Vec<usize> = (0..scores.len()).collect();
        let mut telemetry = SelectionMetrics {
            select_score_mean: Some(mean(&scores, &picked)),
            candidate_score_mean: Some(mean(&scores, &all)),
            ..Default::default()
        };
        if let Some(mut t) = uds {
            telemetry.uds_intra_mean = Some(mean(&t.intra, &picked));
            telemetry.uds_inter_mean = Some(mean(&t.inter, &picked));
            for &p in &picked {
                self.buffer.push(std::mem::take(&mut t.sketches[p]));
            }
            telemetry.uds_buffer = Some(self.buffer.len());
        }
        Ok(Choice {
            chosen: picked.iter().map(|&p| candidates[p]).collect(),
            telemetry,
        })
    }

    /// Nuclear norm, buffer distance and sketch of each row's full logits matrix.
    fn uds_terms(
        &self,
        model: &DecoderModel,
        rows: &[&Example],
        micro: usize,
        pad_id: u32,
    ) -> Result<UdsTerms> {
        let projector = self.projector.as_ref().expect("UDS has a projector");
        let mut terms = UdsTerms {
            intra: vec![0.0; rows.len()],
            inter: vec![0.0; rows.len()],
            sketches: vec![Vec::new(); rows.len()],
        };
        for at in length_sorted(rows).chunks(micro) {
            let chunk: Vec<&Example> = at.iter().map(|&i| rows[i]).collect();
            let p = pack(&chunk, pad_id, model.device())?;
            let opts = ForwardOpts {
                adapters: true,
                grad: Grad::Off,
                logits: LogitsAt::All,
            };
            let logits = model.forward(&p.input, None, opts)?.to_dtype(DType::F32)?;
            let t_max = p.input.len;
            for (r, (&i, e)) in at.iter().zip(&chunk).enumerate() {
                // The row's real (right-aligned) positions.
                let n = e.ids.len() - 1;
                let l = logits.i(r)?.narrow(0, t_max - n, n)?.contiguous()?;
                terms.intra[i] = nuclear_norm(&l)?;
                let z = projector.project(&l.flatten_all()?.to_vec1::<f32>()?, n)?;
                terms.inter[i] = self.buffer.mean_distance(&z);
                terms.sketches[i] = z;
            }
        }
        Ok(terms)
    }
}

/// Mean token loss of each row (policy: adapters on; reference: off).
fn losses(
    model: &DecoderModel,
    rows: &[&Example],
    micro: usize,
    pad_id: u32,
    adapters: bool,
) -> Result<Vec<f64>> {
    let mut out = vec![0.0; rows.len()];
    for at in length_sorted(rows).chunks(micro) {
        let chunk: Vec<&Example> = at.iter().map(|&i| rows[i]).collect();
        let scores = example_losses(model, &pack(&chunk, pad_id, model.device())?, adapters)?;
        for (&i, score) in at.iter().zip(scores) {
            out[i] = score;
        }
    }
    Ok(out)
}

/// Positions of `rows` from shortest to longest (ties: the earlier row), so that scoring
/// micro-batches hold rows of similar length and pad few positions.
fn length_sorted(rows: &[&Example]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| rows[i].ids.len());
    order
}

/// Positions of the `k` highest scores (ties: the earlier candidate), in ascending order.
pub fn top_k(scores: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut picked = order[..k.min(order.len())].to_vec();
    picked.sort_unstable();
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_sorted_orders_rows_shortest_first_with_stable_ties() {
        let ex = |n: usize| Example {
            ids: vec![1; n],
            trainable: vec![true; n],
            truncated: false,
        };
        let rows = [ex(5), ex(2), ex(7), ex(2), ex(3)];
        let refs: Vec<&Example> = rows.iter().collect();
        assert_eq!(length_sorted(&refs), [1, 3, 4, 0, 2]);
    }

    #[test]
    fn top_k_keeps_k_highest_with_stable_ties() {
        assert_eq!(top_k(&[0.1, 3.0, -1.0, 3.0, 2.0], 2), [1, 3]);
        assert_eq!(top_k(&[0.1, 3.0, -1.0, 3.0, 2.0], 3), [1, 3, 4]);
        assert_eq!(top_k(&[1.0, 1.0, 1.0], 2), [0, 1]);
        assert_eq!(top_k(&[1.0], 4), [0]);
    }
}
