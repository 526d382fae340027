//! Activation (gradient) checkpointing of the training forward, one decoder block at a time.
//!
//! candle's autograd keeps every intermediate tensor of a forward alive until the backward.
//! With LoRA on every projection that is some twenty tensors per block, the widest the MLP's
//! `[B, T, intermediate]` products (base, adapter update, scaled update, sum, SiLU, gate·up)
//! and the attention's `[B, heads, T, S]` scores and probabilities: about 1 GB per block for
//! 8 × 512 tokens of a Qwen2.5-0.5B, so 24 GB for its 24 blocks.
//!
//! [`DecoderModel::forward_checkpointed`] runs each block on a detached copy of its input, keeps
//! only that input (`[B, T, H]`, 11 MB there) and drops the block's graph. The last block's
//! output becomes a leaf variable, and the final norm and LM head are built on it as in
//! [`DecoderModel::forward`]. After the loss's own backward has given that leaf's gradient,
//! [`LayerTape::backward`] walks the blocks last to first: it runs each block's forward again
//! from its saved input under a fresh graph, back-propagates the output's gradient through it,
//! hands the adapters' gradients to the caller, and passes the input's gradient down. A custom
//! op per block cannot do this in candle, because an op's backward returns gradients for its
//! tensor inputs only, not for the adapters it uses inside.
//!
//! Peak activation memory is one block's graph plus the saved inputs; the price is a second
//! forward of every block. The recomputed forward runs the same ops on the same values as the
//! first, so the loss is the same and the gradients equal those of a plain backward up to the
//! order of float sums.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::error::{ModelError, Result};
use crate::input::StepInput;
use crate::model::{Context, DecoderModel, ForwardOpts, Prefixes, RowTables};

/// What the backward of a checkpointed forward needs: each block's input and how to run it.
pub struct LayerTape<'a> {
    blocks: Blocks<'a>,
    /// Each block's input: the rows' hidden states and, with shared prefixes, the prefixes'.
    saved: Vec<(Tensor, Option<Tensor>)>,
    /// The last block's output, the leaf the head's graph starts from.
    top: Var,
}

/// The decoder blocks of one forward call with its inputs' tables, run one at a time.
struct Blocks<'a> {
    model: &'a DecoderModel,
    opts: ForwardOpts,
    tables: RowTables,
    prefix: Option<PrefixPass<'a>>,
}

/// The shared prefixes the rows continue (see [`DecoderModel::forward_with_prefixes`]).
struct PrefixPass<'a> {
    shared: Prefixes<'a>,
    tables: RowTables,
}

impl DecoderModel {
    /// [`DecoderModel::forward`] (or, with `prefixes = Some((prefix_input, of_row))`,
    /// [`DecoderModel::forward_with_prefixes`]) with activation checkpointing: the result has the
    /// same value, but its graph reaches back only to the last block's output. Back-propagate a
    /// loss built on it, then call [`LayerTape::backward`] with the gradients to get the
    /// adapters' gradients block by block.
    pub fn forward_checkpointed<'a>(
        &'a self,
        input: &StepInput,
        prefixes: Option<(&'a StepInput, &'a [usize])>,
        opts: ForwardOpts,
    ) -> Result<(Tensor, LayerTape<'a>)> {
        let shared = prefixes
            .map(|(p, of_row)| self.prefixes(p, of_row, input))
            .transpose()?;
        let tables = match &shared {
            Some(s) => self.row_tables(input, &Context::Prefixed(s))?,
            None => self.row_tables(input, &Context::Fresh)?,
        };
        let prefix = shared
            .map(|shared| {
                let tables = self.row_tables(shared.input, &Context::Fresh)?;
                Ok::<_, ModelError>(PrefixPass { shared, tables })
            })
            .transpose()?;
        let mut x = self.embed(input)?;
        let mut p = match &prefix {
            Some(pre) => Some(self.embed(pre.shared.input)?),
            None => None,
        };
        let blocks = Blocks {
            model: self,
            opts,
            tables,
            prefix,
        };
        let mut saved = Vec::with_capacity(self.blocks.len());
        for i in 0..self.blocks.len() {
            let (x_in, p_in) = (x.detach(), p.as_ref().map(Tensor::detach));
            // Only the detached outputs outlive this iteration: the block's graph is dropped.
            let (x_out, p_out) = blocks.run(i, &x_in, p_in.as_ref())?;
            saved.push((x_in, p_in));
            (x, p) = (x_out.detach(), p_out.as_ref().map(Tensor::detach));
        }
        let top = Var::from_tensor(&x)?;
        let out = self.output(top.as_tensor(), opts)?;
        Ok((out, LayerTape { blocks, saved, top }))
    }
}

impl LayerTape<'_> {
    /// Back-propagates through every block, last first, given `grads` from the backward of a
    /// loss built on [`DecoderModel::forward_checkpointed`]'s result. `sink` receives each
    /// block's gradient store (its adapters' gradients, plus those of internal leaves that
    /// belong to no one else); nothing is left to do when the loss does not depend on the
    /// result.
    pub fn backward<E: From<ModelError>>(
        mut self,
        grads: &GradStore,
        mut sink: impl FnMut(&GradStore) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let Some(g) = grads.get(self.top.as_tensor()) else {
            return Ok(());
        };
        let mut g = g.detach();
        let mut g_prefix: Option<Tensor> = None;
        let saved = std::mem::take(&mut self.saved);
        for (i, (x_in, p_in)) in saved.into_iter().enumerate().rev() {
            let x = Var::from_tensor(&x_in).map_err(ModelError::from)?;
            drop(x_in);
            let p = p_in
                .map(|p| Var::from_tensor(&p))
                .transpose()
                .map_err(ModelError::from)?;
            let store = self
                .blocks
                .backward(i, &x, p.as_ref(), &g, g_prefix.as_ref())?;
            sink(&store)?;
            g = store
                .get(x.as_tensor())
                .ok_or_else(|| {
                    ModelError::Input(format!("no gradient reached the input of block {i}"))
                })?
                .detach();
            g_prefix = p.and_then(|p| store.get(p.as_tensor()).map(Tensor::detach));
        }
        Ok(())
    }
}

impl Blocks<'_> {
    /// Block `i` again on the leaves `x` (and `p`), back-propagating `g` (and `g_prefix`)
    /// from its outputs: `d/dθ Σ out·g` is the chain rule's `gᵀ · ∂out/∂θ`.
    fn backward(
        &self,
        i: usize,
        x: &Var,
        p: Option<&Var>,
        g: &Tensor,
        g_prefix: Option<&Tensor>,
    ) -> Result<GradStore> {
        let (x_out, p_out) = self.run(i, x.as_tensor(), p.map(Var::as_tensor))?;
        let mut surrogate = (x_out * g)?.sum_all()?;
        if let (Some(out), Some(g)) = (p_out, g_prefix) {
            surrogate = (surrogate + (out * g)?.sum_all()?)?;
        }
        Ok(surrogate.backward()?)
    }

    /// Block `i` on the rows' hidden states `x` and, with shared prefixes, the prefixes' `p`:
    /// the prefixes run first and hand the block's keys and values to the rows' attention.
    /// After the last block the prefixes' output is left out: only their keys and values count.
    fn run(&self, i: usize, x: &Tensor, p: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
        let (m, opts) = (self.model, self.opts);
        let block = &m.blocks[i];
        let rows = |ctx: &mut Context| -> Result<Tensor> {
            // One block's keys and values at most, so the context's layer index is 0.
            let x1 = m.attention_residual(block, 0, x, &self.tables, ctx, opts)?;
            m.mlp_residual(block, &x1, opts)
        };
        match (&self.prefix, p) {
            (None, _) => Ok((rows(&mut Context::Fresh)?, None)),
            (Some(pre), Some(p)) => {
                let mut shared = Prefixes {
                    input: pre.shared.input,
                    kv: Vec::with_capacity(1),
                    index: pre.shared.index.clone(),
                    of_row: pre.shared.of_row,
                };
                let ctx = &mut Context::Collect(&mut shared.kv);
                let p1 = m.attention_residual(block, 0, p, &pre.tables, ctx, opts)?;
                let p_out = match i + 1 < m.blocks.len() {
                    true => Some(m.mlp_residual(block, &p1, opts)?),
                    false => None,
                };
                Ok((rows(&mut Context::Prefixed(&shared))?, p_out))
            }
            (Some(_), None) => Err(ModelError::Input(format!(
                "block {i} of a prefixed forward got no prefix states"
            ))),
        }
    }
}
