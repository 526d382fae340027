//! Full fine-tuning: every weight of the model becomes a trainable variable.
//!
//! The model keeps its weights as tensors; here each one is replaced by the tensor of a fresh
//! [`Var`] (a contiguous copy), so the forward pass is unchanged and autograd reaches the
//! weights: linear layers switch to [`BaseWeight::Trainable`] (a plain matmul instead of the
//! frozen-weight ops), RMSNorm takes its composite ops for a trained weight
//! ([`crate::ops::rms_norm`]) and the embedding lookup is an `index_select` on the variable.
//! The fused q/k/v and gate/up bases (views into one frozen buffer) are split back into
//! their projections. A tied LM head multiplies by the embedding's own variable, so the
//! tied weight stays one parameter with both gradients.
//!
//! An optimizer updates a `Var` in place, which the model's tensors share: no copy back.

use candle_core::{Tensor, Var};

use crate::error::{ModelError, Result};
use crate::linear::{BaseWeight, LoraLinear};
use crate::model::DecoderModel;

/// A variable holding a copy of `t`, and the tensor the model keeps in its place.
fn variable(t: &Tensor) -> Result<(Var, Tensor)> {
    let var = Var::from_tensor(t)?;
    let tensor = var.as_tensor().clone();
    Ok((var, tensor))
}

/// Makes `linear`'s weight (and bias) trainable; their HF names start with `prefix`.
fn train_linear(prefix: &str, linear: &mut LoraLinear, out: &mut Vec<(String, Var)>) -> Result<()> {
    let weight = Var::from_tensor(&linear.dense_weight()?)?;
    linear.base = BaseWeight::Trainable(weight.clone());
    out.push((format!("{prefix}.weight"), weight));
    if let Some(b) = &linear.bias {
        let (var, tensor) = variable(b)?;
        linear.bias = Some(tensor);
        out.push((format!("{prefix}.bias"), var));
    }
    Ok(())
}

impl DecoderModel {
    /// Turns every weight into a trainable variable and returns them with their HF names
    /// (`model.embed_tokens.weight`, `model.layers.{i}.self_attn.q_proj.weight`, ...: the keys
    /// of [`DecoderModel::merged_tensors`], so a saved full checkpoint loads back by name), in
    /// a stable order. A tied LM head is not listed: it is the embedding's variable.
    ///
    /// Refused when LoRA adapters are attached: a run trains adapters or all weights.
    pub fn make_trainable(&mut self) -> Result<Vec<(String, Var)>> {
        if self.projections().any(|(_, _, l)| l.adapter.is_some()) {
            return Err(ModelError::Input(
                "full fine-tuning: the model has LoRA adapters attached".into(),
            ));
        }
        let mut out = Vec::new();
        let (embed, tensor) = variable(&self.embed)?;
        self.embed = tensor;
        out.push(("model.embed_tokens.weight".to_string(), embed.clone()));
        for (i, block) in self.blocks.iter_mut().enumerate() {
            let p = format!("model.layers.{i}");
            block.attn.qkv = None;
            block.mlp.gate_up = None;
            let (var, tensor) = variable(&block.attn_norm)?;
            block.attn_norm = tensor;
            out.push((format!("{p}.input_layernorm.weight"), var));
            let (var, tensor) = variable(&block.mlp_norm)?;
            block.mlp_norm = tensor;
            out.push((format!("{p}.post_attention_layernorm.weight"), var));
            for (name, norm) in [
                ("q_norm", &mut block.attn.q_norm),
                ("k_norm", &mut block.attn.k_norm),
            ] {
                if let Some(w) = norm {
                    let (var, tensor) = variable(w)?;
                    *w = tensor;
                    out.push((format!("{p}.self_attn.{name}.weight"), var));
                }
            }
        }
        let linears: Vec<_> = self
            .projections_mut()
            .map(|(i, target, l)| (format!("model.layers.{i}.{}", target.hf_path()), l))
            .collect();
        for (prefix, linear) in linears {
            train_linear(&prefix, linear, &mut out)?;
        }
        let (var, tensor) = variable(&self.norm)?;
        self.norm = tensor;
        out.push(("model.norm.weight".to_string(), var));
        if self.cfg.tie_word_embeddings {
            self.lm_head.base = BaseWeight::Trainable(embed);
        } else {
            train_linear("lm_head", &mut self.lm_head, &mut out)?;
        }
        Ok(out)
    }
}
