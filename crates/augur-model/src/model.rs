//! The decoder: embedding, N x (attention + SwiGLU MLP) blocks, final norm, LM head.
//!
//! One forward serves generation (fused kernels, KV cache, logits of the last
//! position only) and training (differentiable ops, full logits, adapters on or
//! off). Tensor names follow the HF checkpoint layout so the code reads against it.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use crate::config::ModelConfig;
use crate::decode_attn::decode_attention;
use crate::error::{ModelError, Result};
use crate::fused::FusedBase;
use crate::input::StepInput;
use crate::kv_cache::{KvCache, KvDtype};
use crate::linear::{BaseWeight, LoraLinear};
use crate::ops::{apply_rope, masked_softmax, rms_norm, swiglu, Grad, Rotary};
use crate::span_attn::{span_attention, spans_of, Span};
use crate::weights::TensorSource;

/// Which positions get logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsAt {
    /// `[B, T, V]`, for training and teacher-forced scoring.
    All,
    /// `[B, V]` for the last position, for sampling.
    Last,
    /// `[B, n, V]` for the last `n` positions: a training step needs logits of the
    /// completion only, and the LM head is the largest matmul of a small model.
    Tail(usize),
    /// `[B, T, H]` final hidden states (after the final norm), for embeddings.
    Hidden,
    /// `[B, n, H]` final hidden states of the last `n` positions: a training step that applies
    /// the LM head itself, in chunks, so the whole batch's logits never exist at once.
    HiddenTail(usize),
}

/// Per-call switches of a forward pass.
#[derive(Debug, Clone, Copy)]
pub struct ForwardOpts {
    /// Apply LoRA adapters (off = the reference policy).
    pub adapters: bool,
    pub grad: Grad,
    pub logits: LogitsAt,
}

impl ForwardOpts {
    /// Sampling from the current policy.
    pub fn generate() -> Self {
        ForwardOpts {
            adapters: true,
            grad: Grad::Off,
            logits: LogitsAt::Last,
        }
    }

    /// Differentiable full-sequence logits of the current policy.
    pub fn train() -> Self {
        ForwardOpts {
            adapters: true,
            grad: Grad::Tracked,
            logits: LogitsAt::All,
        }
    }
}

/// Additive masks below this are treated as "blocked"; finite so fully padded query rows stay NaN-free.
const MASKED: f32 = -1e9;

/// The RoPE tables `[B, T, D/2]` of a batch's positions and its additive attention mask
/// `[B, 1, 1, T, past + T]`, shared by every block.
pub(crate) struct RowTables {
    cos: Tensor,
    sin: Tensor,
    mask: AttentionMask,
}

/// Which keys each query sees.
pub(crate) enum AttentionMask {
    /// Only earlier tokens of its own span ([`span_attention`]): rows without past keys, on
    /// the CPU in f32.
    Spans(Arc<[Span]>),
    /// An additive mask `[B, 1, 1, T, past + T]` over all of the row's keys.
    Bias(Tensor),
}

/// Where a forward pass's attention finds keys and values beyond its own tokens.
pub(crate) enum Context<'a> {
    /// Only the input's own tokens.
    Fresh,
    /// Earlier tokens in a KV cache, which the input's are appended to.
    Cache(&'a mut KvCache),
    /// A prefix pass: record every layer's keys and values (RoPE applied).
    Collect(&'a mut Vec<(Tensor, Tensor)>),
    /// Rows continuing shared prefixes.
    Prefixed(&'a Prefixes<'a>),
}

/// Per-layer keys and values of the shared prefixes, and which prefix each row continues.
pub(crate) struct Prefixes<'a> {
    pub input: &'a StepInput,
    pub kv: Vec<(Tensor, Tensor)>,
    /// `of_row` as a tensor, for gathering the prefixes' keys and values per row.
    pub index: Tensor,
    pub of_row: &'a [usize],
}

impl Context<'_> {
    /// Keys before the input's own.
    fn past_len(&self) -> usize {
        match self {
            Context::Cache(c) => c.len(),
            Context::Prefixed(p) => p.input.len,
            Context::Fresh | Context::Collect(_) => 0,
        }
    }

    /// Whether queries see only the input's own tokens (no cached or shared-prefix keys).
    fn own_tokens_only(&self) -> bool {
        matches!(self, Context::Fresh | Context::Collect(_))
    }

    /// Whether earlier key `j` of `row` is a real token.
    fn past_valid(&self, row: usize, j: usize) -> bool {
        match self {
            Context::Cache(c) => c.is_valid(row, j),
            Context::Prefixed(p) => p.input.mask[p.of_row[row] * p.input.len + j] != 0,
            Context::Fresh | Context::Collect(_) => false,
        }
    }
}

pub(crate) struct Attention {
    pub q: LoraLinear,
    pub k: LoraLinear,
    pub v: LoraLinear,
    pub o: LoraLinear,
    /// q, k and v bases as one matmul (dense weights on the CPU), for passes without gradients.
    pub qkv: Option<FusedBase>,
    pub q_norm: Option<Tensor>,
    pub k_norm: Option<Tensor>,
}

pub(crate) struct Mlp {
    pub gate: LoraLinear,
    pub up: LoraLinear,
    pub down: LoraLinear,
    /// gate and up bases as one matmul (dense weights on the CPU), for passes without gradients.
    pub gate_up: Option<FusedBase>,
}

pub(crate) struct Block {
    pub attn_norm: Tensor,
    pub attn: Attention,
    pub mlp_norm: Tensor,
    pub mlp: Mlp,
}

/// A decoder-only transformer covering Llama, Qwen2/2.5 and Qwen3.
pub struct DecoderModel {
    pub cfg: ModelConfig,
    pub(crate) embed: Tensor,
    pub(crate) blocks: Vec<Block>,
    pub(crate) norm: Tensor,
    pub(crate) lm_head: LoraLinear,
    rotary: Rotary,
    dtype: DType,
    weights: WeightDtype,
    device: Device,
}

/// The precision of the frozen linear weights on the CPU (`[model] dtype`).
///
/// `Bf16` stores them as bf16 panels for the AVX512-BF16 kernel ([`crate::packed_bf16`]): half
/// the memory and memory traffic, with f32 accumulation; activations are rounded to bf16 only
/// as inputs of those products, while adapters, norms, softmax and the loss stay f32. Rollouts
/// and updates share the model, so both run at the same precision. A CPU without AVX512-BF16
/// falls back to `F32` with a one-line warning (see [`WeightDtype::resolve`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightDtype {
    #[default]
    F32,
    Bf16,
}

impl WeightDtype {
    /// The precision this machine runs for a request of `self` on `device`: `Bf16` needs a
    /// CPU device with AVX512-BF16. The second value explains a fallback (for a warning).
    pub fn resolve(self, device: &Device) -> (WeightDtype, Option<String>) {
        match self {
            WeightDtype::Bf16 if !device.is_cpu() => (
                WeightDtype::F32,
                Some("dtype = \"bf16\" is for the CPU kernels; on this device the frozen weights stay f32".into()),
            ),
            WeightDtype::Bf16 if !crate::packed_bf16::cpu_supported() => (
                WeightDtype::F32,
                Some("dtype = \"bf16\" needs a CPU with AVX512-BF16, which this one lacks; the frozen weights stay f32".into()),
            ),
            other => (other, None),
        }
    }
}

impl std::str::FromStr for WeightDtype {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => Ok(WeightDtype::F32),
            "bf16" => Ok(WeightDtype::Bf16),
            other => Err(format!(
                "unknown dtype {other:?}: expected \"f32\" or \"bf16\""
            )),
        }
    }
}

/// How to materialise the weights.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The dtype of the weights and activations as candle tensors.
    pub dtype: DType,
    /// The precision of the frozen linear weights in the CPU kernels (with `dtype` f32).
    pub weights: WeightDtype,
    pub device: Device,
    /// Keep GGUF-quantized linear weights quantized (QLoRA style) instead of dequantizing.
    pub keep_quantized: bool,
    /// Size of the RoPE tables; defaults to `max_position_embeddings` capped at 32768.
    pub max_positions: Option<usize>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            dtype: DType::F32,
            weights: WeightDtype::F32,
            device: Device::Cpu,
            keep_quantized: false,
            max_positions: None,
        }
    }
}

impl DecoderModel {
    /// Builds the model from a tensor source, checking every shape against `cfg`.
    pub fn build(
        cfg: ModelConfig,
        src: &mut dyn TensorSource,
        opts: &BuildOptions,
    ) -> Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        let (q_out, kv_out) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
        let dt = opts.dtype;
        let weights = match dt {
            DType::F32 => {
                let (weights, why) = opts.weights.resolve(&opts.device);
                if let Some(why) = why {
                    eprintln!("warning: {why}");
                }
                weights
            }
            _ => WeightDtype::F32,
        };
        let embed = src.dense("model.embed_tokens.weight", &[cfg.vocab_size, h], dt)?;
        let linear = |src: &mut dyn TensorSource,
                      name: &str,
                      out: usize,
                      inp: usize,
                      bias: bool|
         -> Result<LoraLinear> {
            let w = src.linear(
                &format!("{name}.weight"),
                &[out, inp],
                dt,
                opts.keep_quantized,
            )?;
            let b = if bias {
                Some(src.dense(&format!("{name}.bias"), &[out], dt)?)
            } else {
                None
            };
            Ok(LoraLinear::new(w, b)?)
        };
        // Grown layer by layer: `num_layers` comes from the config file and is only trusted once
        // the weights of each layer are found.
        let mut blocks = Vec::new();
        for i in 0..cfg.num_layers {
            let p = format!("model.layers.{i}");
            let mut attn = Attention {
                qkv: None,
                q: linear(
                    src,
                    &format!("{p}.self_attn.q_proj"),
                    q_out,
                    h,
                    cfg.qkv_bias,
                )?,
                k: linear(
                    src,
                    &format!("{p}.self_attn.k_proj"),
                    kv_out,
                    h,
                    cfg.qkv_bias,
                )?,
                v: linear(
                    src,
                    &format!("{p}.self_attn.v_proj"),
                    kv_out,
                    h,
                    cfg.qkv_bias,
                )?,
                o: linear(src, &format!("{p}.self_attn.o_proj"), h, q_out, false)?,
                q_norm: match cfg.qk_norm {
                    true => Some(src.dense(&format!("{p}.self_attn.q_norm.weight"), &[hd], dt)?),
                    false => None,
                },
                k_norm: match cfg.qk_norm {
                    true => Some(src.dense(&format!("{p}.self_attn.k_norm.weight"), &[hd], dt)?),
                    false => None,
                },
            };
            let mut mlp = Mlp {
                gate_up: None,
                gate: linear(
                    src,
                    &format!("{p}.mlp.gate_proj"),
                    cfg.intermediate_size,
                    h,
                    false,
                )?,
                up: linear(
                    src,
                    &format!("{p}.mlp.up_proj"),
                    cfg.intermediate_size,
                    h,
                    false,
                )?,
                down: linear(
                    src,
                    &format!("{p}.mlp.down_proj"),
                    h,
                    cfg.intermediate_size,
                    false,
                )?,
            };
            if opts.device.is_cpu() {
                attn.qkv = FusedBase::fuse(&mut [&mut attn.q, &mut attn.k, &mut attn.v], weights)?;
                mlp.gate_up = FusedBase::fuse(&mut [&mut mlp.gate, &mut mlp.up], weights)?;
            }
            for l in [&mut attn.o, &mut mlp.down] {
                l.pack(weights)?;
            }
            if attn.qkv.is_none() {
                for l in [&mut attn.q, &mut attn.k, &mut attn.v] {
                    l.pack(weights)?;
                }
            }
            if mlp.gate_up.is_none() {
                for l in [&mut mlp.gate, &mut mlp.up] {
                    l.pack(weights)?;
                }
            }
            blocks.push(Block {
                attn_norm: src.dense(&format!("{p}.input_layernorm.weight"), &[h], dt)?,
                attn,
                mlp_norm: src.dense(&format!("{p}.post_attention_layernorm.weight"), &[h], dt)?,
                mlp,
            });
        }
        let norm = src.dense("model.norm.weight", &[h], dt)?;
        let mut lm_head = if cfg.tie_word_embeddings || !src.has("lm_head.weight") {
            LoraLinear::new(BaseWeight::Dense(embed.clone()), None)?
        } else {
            linear(src, "lm_head", cfg.vocab_size, h, false)?
        };
        // A tied head gets its own packed copy: the embedding lookup needs the rows.
        lm_head.pack(weights)?;
        let max_positions = opts
            .max_positions
            .unwrap_or(cfg.max_position_embeddings.min(32_768));
        let rotary = Rotary::new(hd, cfg.rope_theta, max_positions, dt, &opts.device)?;
        Ok(DecoderModel {
            cfg,
            embed,
            blocks,
            norm,
            lm_head,
            rotary,
            dtype: dt,
            weights,
            device: opts.device.clone(),
        })
    }

    /// The LM head (never adapted: LoRA targets only the decoder blocks' projections).
    pub fn lm_head(&self) -> &LoraLinear {
        &self.lm_head
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The precision the frozen linear weights run at (after any fallback, see
    /// [`WeightDtype::resolve`]).
    pub fn weight_dtype(&self) -> WeightDtype {
        self.weights
    }

    /// Largest position the RoPE tables cover.
    pub fn max_positions(&self) -> usize {
        self.rotary.max_positions()
    }

    /// Allocates a KV cache for `batch` rows of up to `capacity` positions, in the model's dtype.
    pub fn new_cache(&self, batch: usize, capacity: usize) -> Result<KvCache> {
        self.new_cache_with(batch, capacity, KvDtype::F32)
    }

    /// Allocates a KV cache whose keys and values are stored at `kv` precision where this
    /// model and device support it ([`KvDtype::resolve`]; its warning is the caller's to show).
    pub fn new_cache_with(&self, batch: usize, capacity: usize, kv: KvDtype) -> Result<KvCache> {
        let (dtype, _) = kv.resolve(self.dtype, &self.device);
        KvCache::new(&self.cfg, batch, capacity, dtype, &self.device)
    }

    /// Runs the decoder on `input`, appending to `cache` when given.
    pub fn forward(
        &self,
        input: &StepInput,
        cache: Option<&mut KvCache>,
        opts: ForwardOpts,
    ) -> Result<Tensor> {
        match cache {
            Some(c) => self.forward_in(input, Context::Cache(c), opts),
            None => self.forward_in(input, Context::Fresh, opts),
        }
    }

    /// Runs the decoder on rows that continue shared prefixes: row `r` of `input` follows
    /// prefix `of_row[r]` of `prefixes`, and its positions must start where that prefix's
    /// real tokens end ([`StepInput::left_padded_from`]).
    ///
    /// The result equals [`DecoderModel::forward`] on the concatenated sequences, gradients
    /// included, but each prefix is computed once instead of once per row: a GRPO group's
    /// G completions share one prompt, which is most of the tokens of short answers.
    pub fn forward_with_prefixes(
        &self,
        prefixes: &StepInput,
        of_row: &[usize],
        input: &StepInput,
        opts: ForwardOpts,
    ) -> Result<Tensor> {
        let mut shared = self.prefixes(prefixes, of_row, input)?;
        self.forward_in(prefixes, Context::Collect(&mut shared.kv), opts)?;
        self.forward_in(input, Context::Prefixed(&shared), opts)
    }

    /// The shared prefixes of `input`'s rows, their keys and values still to be collected,
    /// after checking that each row names one of them.
    pub(crate) fn prefixes<'a>(
        &self,
        prefixes: &'a StepInput,
        of_row: &'a [usize],
        input: &StepInput,
    ) -> Result<Prefixes<'a>> {
        if of_row.len() != input.batch || of_row.iter().any(|&p| p >= prefixes.batch) {
            return Err(ModelError::Input(format!(
                "{} rows need a prefix index each below {} (got {:?})",
                input.batch, prefixes.batch, of_row
            )));
        }
        let index: Vec<u32> = of_row.iter().map(|&p| p as u32).collect();
        Ok(Prefixes {
            input: prefixes,
            kv: Vec::with_capacity(self.blocks.len()),
            index: Tensor::new(index.as_slice(), &self.device)?,
            of_row,
        })
    }

    fn forward_in(&self, input: &StepInput, mut ctx: Context, opts: ForwardOpts) -> Result<Tensor> {
        let (b, t) = input.ids.dims2()?;
        if let Context::Cache(c) = &ctx {
            c.reserve(t)?;
            if c.batch() != b {
                return Err(ModelError::Input(format!(
                    "input has {b} rows, KV cache has {}",
                    c.batch()
                )));
            }
        }
        if input.segments.is_some() && !matches!(ctx, Context::Fresh) {
            return Err(ModelError::Input(
                "packed rows run without a KV cache or shared prefixes".into(),
            ));
        }
        // Without gradients no tensor may keep its inputs alive. Trainable weights (LoRA
        // adapters, fully fine-tuned weights) make candle record every op's inputs even in a
        // no-grad pass, so all layers' activations lived until the output was dropped (8 GB
        // for a 240-prompt prefill with adapters, against 2 GB without). Cutting the record at
        // each block keeps one block's.
        let cut = |t: Tensor| match opts.grad {
            Grad::Off => t.detach(),
            Grad::Tracked => t,
        };
        let tables = self.row_tables(input, &ctx)?;
        let mut x = self.embed(input)?;
        for (i, block) in self.blocks.iter().enumerate() {
            let x1 = self.attention_residual(block, i, &x, &tables, &mut ctx, opts)?;
            if matches!(ctx, Context::Collect(_)) && i + 1 == self.blocks.len() {
                // A prefix pass only needs every layer's keys and values.
                return Ok(cut(x1));
            }
            x = cut(self.mlp_residual(block, &x1, opts)?);
        }
        if let Context::Cache(c) = ctx {
            c.advance(&input.mask, t);
        }
        self.output(&x, opts).map(cut)
    }

    /// The token embeddings `[B, T, H]` of `input`.
    pub(crate) fn embed(&self, input: &StepInput) -> Result<Tensor> {
        let (b, t) = input.ids.dims2()?;
        Ok(self
            .embed
            .index_select(&input.ids.flatten_all()?, 0)?
            .reshape((b, t, ()))?)
    }

    /// The RoPE tables and attention mask of `input`'s rows in `ctx`.
    pub(crate) fn row_tables(&self, input: &StepInput, ctx: &Context) -> Result<RowTables> {
        let spans = match ctx.own_tokens_only() && self.device.is_cpu() && self.dtype == DType::F32
        {
            true => spans_of(input),
            false => None,
        };
        let mask = match spans {
            Some(spans) => AttentionMask::Spans(spans.into()),
            None => AttentionMask::Bias(self.attention_bias(input, ctx)?),
        };
        let (cos, sin) = self.rotary.gather(&input.positions)?;
        Ok(RowTables { cos, sin, mask })
    }

    /// `x + attention(norm(x))` of `block`; `kv_layer` indexes the context's per-layer keys and
    /// values (the block's own index, except in a one-layer context).
    pub(crate) fn attention_residual(
        &self,
        block: &Block,
        kv_layer: usize,
        x: &Tensor,
        tables: &RowTables,
        ctx: &mut Context,
        opts: ForwardOpts,
    ) -> Result<Tensor> {
        let normed = rms_norm(x, &block.attn_norm, self.cfg.rms_norm_eps, opts.grad)?;
        let attn = self.attention(kv_layer, &block.attn, &normed, tables, ctx, opts)?;
        Ok((x + attn)?)
    }

    /// `x1 + mlp(norm(x1))` of `block` (SwiGLU).
    pub(crate) fn mlp_residual(
        &self,
        block: &Block,
        x1: &Tensor,
        opts: ForwardOpts,
    ) -> Result<Tensor> {
        let normed = rms_norm(x1, &block.mlp_norm, self.cfg.rms_norm_eps, opts.grad)?;
        let m = &block.mlp;
        let (gate, up) = match (&m.gate_up, opts.grad) {
            (Some(f), Grad::Off) => f.forward(&normed, [&m.gate, &m.up], opts.adapters)?.into(),
            _ => (
                m.gate.forward(&normed, opts.adapters)?,
                m.up.forward(&normed, opts.adapters)?,
            ),
        };
        let hidden = swiglu(&gate, &up, opts.grad)?;
        Ok((x1 + m.down.forward(&hidden, opts.adapters)?)?)
    }

    /// What `opts.logits` asks for, from the last block's output `x: [B, T, H]`: the final
    /// norm, and the LM head unless hidden states are asked for.
    pub(crate) fn output(&self, x: &Tensor, opts: ForwardOpts) -> Result<Tensor> {
        let t = x.dim(1)?;
        let x = match opts.logits {
            LogitsAt::Last => x.narrow(1, t - 1, 1)?,
            LogitsAt::Tail(n) | LogitsAt::HiddenTail(n) if n <= t => x.narrow(1, t - n, n)?,
            LogitsAt::Tail(n) | LogitsAt::HiddenTail(n) => {
                return Err(ModelError::Input(format!(
                    "asked for logits of the last {n} positions of {t}"
                )))
            }
            _ => x.clone(),
        };
        let x = rms_norm(&x, &self.norm, self.cfg.rms_norm_eps, opts.grad)?;
        Ok(match opts.logits {
            LogitsAt::Hidden | LogitsAt::HiddenTail(_) => x,
            LogitsAt::All | LogitsAt::Tail(_) => self.lm_head.forward(&x, opts.adapters)?,
            LogitsAt::Last => self.lm_head.forward(&x, opts.adapters)?.squeeze(1)?,
        })
    }

    /// Additive mask `[B, 1, 1, T, past + T]`: causal and blind to padded keys, where
    /// `past` keys come from the KV cache or the rows' shared prefixes; in packed rows also
    /// blind to the keys of other sequences (block-diagonal).
    fn attention_bias(&self, input: &StepInput, ctx: &Context) -> Result<Tensor> {
        let (b, t) = (input.batch, input.len);
        let past = ctx.past_len();
        let s = past + t;
        let mut bias = vec![MASKED; b * t * s];
        for row in 0..b {
            for i in 0..t {
                let out = &mut bias[(row * t + i) * s..(row * t + i + 1) * s];
                for (j, slot) in out.iter_mut().enumerate().take(past + i + 1) {
                    let valid = match j < past {
                        true => ctx.past_valid(row, j),
                        false => {
                            let key = row * t + (j - past);
                            input.mask[key] != 0
                                && input
                                    .segments
                                    .as_ref()
                                    .is_none_or(|seg| seg[key] == seg[row * t + i])
                        }
                    };
                    if valid {
                        *slot = 0.0;
                    }
                }
            }
        }
        Ok(Tensor::from_vec(bias, (b, 1, 1, t, s), &self.device)?.to_dtype(self.dtype)?)
    }

    fn attention(
        &self,
        layer: usize,
        attn: &Attention,
        x: &Tensor,
        tables: &RowTables,
        ctx: &mut Context,
        opts: ForwardOpts,
    ) -> Result<Tensor> {
        let RowTables { cos, sin, mask } = tables;
        let cfg = &self.cfg;
        let (b, t, _) = x.dims3()?;
        let (hd, nh, nkv) = (cfg.head_dim, cfg.num_heads, cfg.num_kv_heads);
        let heads = |y: Tensor, n: usize, norm: &Option<Tensor>| -> Result<Tensor> {
            let y = y.reshape((b, t, n, hd))?;
            let y = match norm {
                Some(w) => rms_norm(&y, w, cfg.rms_norm_eps, opts.grad)?,
                None => y,
            };
            Ok(y.transpose(1, 2)?.contiguous()?)
        };
        // The fused bases serve passes without gradients: in a tracked pass each part is a
        // narrowed view whose backward pads its gradient to the fused width and adds the parts
        // up (two full-width passes per part, on one thread), and the strided parts cost a copy
        // before the heads' reshape; separate products cost the same GEMM work and neither.
        let [q, k, v] = match (&attn.qkv, opts.grad) {
            (Some(f), Grad::Off) => f.forward(x, [&attn.q, &attn.k, &attn.v], opts.adapters)?,
            _ => [
                attn.q.forward(x, opts.adapters)?,
                attn.k.forward(x, opts.adapters)?,
                attn.v.forward(x, opts.adapters)?,
            ],
        };
        let q = heads(q, nh, &attn.q_norm)?;
        let k = heads(k, nkv, &attn.k_norm)?;
        let v = heads(v, nkv, &None)?;
        let q = apply_rope(&q, cos, sin, opts.grad)?;
        let k = apply_rope(&k, cos, sin, opts.grad)?;
        let (k, v) = match ctx {
            Context::Fresh => (k, v),
            Context::Cache(c) => c.append(layer, &k, &v)?,
            Context::Collect(kv) => {
                kv.push((k.clone(), v.clone()));
                (k, v)
            }
            Context::Prefixed(p) => {
                let (pk, pv) = &p.kv[layer];
                (
                    Tensor::cat(&[&pk.index_select(&p.index, 0)?, &k], 2)?,
                    Tensor::cat(&[&pv.index_select(&p.index, 0)?, &v], 2)?,
                )
            }
        };
        let scale = 1.0 / (hd as f64).sqrt();
        let bias = match mask {
            AttentionMask::Spans(spans) if ctx.own_tokens_only() => {
                let out =
                    span_attention(&q, &k, &v, spans, scale as f32, opts.grad == Grad::Tracked)?;
                return Ok(attn.o.forward(&out, opts.adapters)?);
            }
            AttentionMask::Spans(_) => {
                return Err(ModelError::Input(
                    "span attention runs only without cached or shared-prefix keys".into(),
                ))
            }
            AttentionMask::Bias(bias) => bias,
        };
        if opts.grad == Grad::Off && t == 1 {
            if let Some(out) = decode_attention(&q, &k, &v, bias)? {
                return Ok(attn.o.forward(&out, opts.adapters)?);
            }
        }
        // A bf16 KV cache is widened for the generic path (no-op for a cache in the model's dtype).
        let (k, v) = (k.to_dtype(q.dtype())?, v.to_dtype(q.dtype())?);
        let s = k.dim(2)?;
        let rep = cfg.kv_groups();
        // Grouped-query attention without copying K/V: fold the query heads that
        // share a KV head into the row dimension.
        let q = q.contiguous()?.reshape((b, nkv, rep * t, hd))?;
        let scores = q.matmul(&k.t()?)?.reshape((b, nh, t, s))?;
        let probs =
            masked_softmax(&scores, bias, scale, opts.grad)?.reshape((b, nkv, rep * t, s))?;
        // `v` may be a narrowed view of the cache: the matmul reads it strided, no copy.
        let out = probs.matmul(&v)?;
        let out = out
            .reshape((b, nh, t, hd))?
            .transpose(1, 2)?
            .reshape((b, t, nh * hd))?;
        Ok(attn.o.forward(&out, opts.adapters)?)
    }
}
