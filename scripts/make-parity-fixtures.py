#!/usr/bin/env python3
"""Create tiny random Llama / Qwen2 / Qwen3 models with HF transformers and their
expected logits, for the Rust parity tests (tests/fixtures/parity/{llama,qwen2,qwen3}/).

Developer-only (needs the venv from scripts/requirements-dev.txt); CI only reads the
committed outputs. Deterministic: fixed seeds, float32, eager attention, 1 thread.

    .venv/bin/python scripts/make-parity-fixtures.py [--out tests/fixtures/parity]

Per arch it writes config.json, model.safetensors, generation_config.json (HF
save_pretrained) and expected.safetensors:

    input_ids      i64 [3, 7]   left-padded, row lengths 7, 4, 2, pad id 0
    attention_mask i64 [3, 7]   1 = real token
    position_ids   i64 [3, 7]   clamp(cumsum(mask) - 1, min=0)   (pads get 0)
    logits         f32 [3, 7, V] full forward with that mask and those positions
    decode_tokens  i64 [3, S]   token fed at decode step s (greedy argmax of the previous logits)
    decode_logits  f32 [3, S, V] logits returned by decode step s (KV cache from the prefill)

See tests/fixtures/parity/README.md (also written by this script) for the conventions.
"""

import argparse
import json
import math
import os
import sys

import torch
import transformers
import safetensors
from safetensors.torch import save_file, load_file
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

SEED = 1234
VOCAB = 256
PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
ROW_LENGTHS = (7, 4, 2)
T = 7
DECODE_STEPS = 3

COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    hidden_act="silu",
    bos_token_id=BOS_ID,
    eos_token_id=EOS_ID,
    pad_token_id=PAD_ID,
)

# name -> (config class, model class, extra config, note)
ARCHS = {
    "llama": (
        LlamaConfig,
        LlamaForCausalLM,
        dict(rope_theta=100000.0, tie_word_embeddings=True, attention_bias=False, mlp_bias=False),
        "SmolLM2-like: tied embeddings, no biases, rope_theta 1e5 (HF default 1e4)",
    ),
    "qwen2": (
        Qwen2Config,
        Qwen2ForCausalLM,
        dict(rope_theta=1000000.0, tie_word_embeddings=False, use_sliding_window=False),
        "Qwen2/2.5-like: q/k/v bias (o_proj has none), untied lm_head, rope_theta 1e6",
    ),
    "qwen3": (
        Qwen3Config,
        Qwen3ForCausalLM,
        dict(
            rope_theta=1000000.0,
            head_dim=32,  # != hidden/heads = 16: q_proj out 128, o_proj in 128
            tie_word_embeddings=True,
            attention_bias=False,
            use_sliding_window=False,
        ),
        "Qwen3-like: per-head q/k RMSNorm, explicit head_dim 32 (hidden/heads = 16), tied, rope_theta 1e6",
    ),
}


def set_rope_theta(cfg_kwargs):
    """transformers 5 stores rope_theta under rope_parameters; older releases top-level."""
    theta = cfg_kwargs.pop("rope_theta")
    cfg_kwargs["rope_parameters"] = {"rope_type": "default", "rope_theta": theta}
    return theta


def randomize_(model, gen):
    """Re-initialise every parameter with O(1)-scale values so that logits are O(1)
    (HF's init, std 0.02, gives near-constant logits that hide bugs) and norm
    weights / biases are non-trivial."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("embed_tokens.weight"):
                # 1/sqrt(hidden): tied lm_head logits then have std ~1 like the untied ones
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            elif "norm" in name:  # input/post_attention/final RMSNorm, q_norm, k_norm
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif p.ndim == 2:  # linear weight [out, in]
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            else:
                raise RuntimeError(f"unexpected parameter {name} {tuple(p.shape)}")


def make_inputs(gen):
    B = len(ROW_LENGTHS)
    input_ids = torch.full((B, T), PAD_ID, dtype=torch.long)
    attention_mask = torch.zeros((B, T), dtype=torch.long)
    for b, n in enumerate(ROW_LENGTHS):
        # real tokens avoid the special ids 0..2
        input_ids[b, T - n :] = torch.randint(3, VOCAB, (n,), generator=gen)
        attention_mask[b, T - n :] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return input_ids, attention_mask, position_ids


@torch.no_grad()
def expected_outputs(model, input_ids, attention_mask, position_ids):
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True)
    logits = out.logits.float()
    past = out.cache
    mask = attention_mask.clone()
    last_pos = position_ids[:, -1:]
    next_logits = logits[:, -1, :]
    dec_tokens, dec_logits = [], []
    for s in range(DECODE_STEPS):
        tok = next_logits.argmax(-1, keepdim=True)  # [B,1]
        mask = torch.cat([mask, torch.ones_like(tok)], dim=1)
        last_pos = last_pos + 1
        o = model(input_ids=tok, attention_mask=mask, position_ids=last_pos, cache=past, use_cache=True)
        past = o.cache
        next_logits = o.logits[:, -1, :].float()
        dec_tokens.append(tok)
        dec_logits.append(next_logits)
    decode_tokens = torch.cat(dec_tokens, dim=1)
    decode_logits = torch.stack(dec_logits, dim=1)
    return logits, decode_tokens, decode_logits


@torch.no_grad()
def cross_checks(model, ex, arch):
    """Independent checks of the expected tensors; returns facts for the README."""
    ids, mask, pos = ex["input_ids"], ex["attention_mask"], ex["position_ids"]
    facts = {}
    # 1. each row alone, unpadded, positions 0..n-1 == the padded batch at real positions
    d = 0.0
    for b, n in enumerate(ROW_LENGTHS):
        alone = model(input_ids=ids[b : b + 1, T - n :]).logits[0]
        d = max(d, (alone - ex["logits"][b, T - n :]).abs().max().item())
    facts["max |padded batch - row alone| (real positions)"] = d
    # 2. cached decode == full forward over prompt + decoded tokens
    full_ids = torch.cat([ids, ex["decode_tokens"]], dim=1)
    full_mask = torch.cat([mask, torch.ones_like(ex["decode_tokens"])], dim=1)
    full_pos = (full_mask.cumsum(-1) - 1).clamp(min=0)
    full = model(input_ids=full_ids, attention_mask=full_mask, position_ids=full_pos).logits
    d = (full[:, T:, :] - ex["decode_logits"]).abs().max().item()
    facts["max |cached decode - full forward|"] = d
    # 3. model.generate (greedy, HF's own cache/position handling) picks the same tokens
    g = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=DECODE_STEPS + 1,
        do_sample=False,
        output_logits=True,
        return_dict_in_generate=True,
        pad_token_id=PAD_ID,
        eos_token_id=None,
    )
    assert torch.equal(g.sequences[:, T : T + DECODE_STEPS], ex["decode_tokens"]), "generate disagrees on tokens"
    d = max((g.logits[s + 1].float() - ex["decode_logits"][:, s]).abs().max().item() for s in range(DECODE_STEPS))
    d = max(d, (g.logits[0].float() - ex["logits"][:, -1]).abs().max().item())
    facts["max |model.generate logits - expected|"] = d
    for k, v in facts.items():
        assert v < 1e-4, f"{arch}: {k} = {v}"
    return facts


@torch.no_grad()
def rope_sensitivity(model_cls, cfg, state, ex):
    """How much the meaningful logits move if a loader ignored rope_theta (used HF's default 1e4)."""
    c = cfg.to_dict()
    c["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0}
    c.pop("rope_theta", None)
    m = model_cls(type(cfg).from_dict(c)).eval()
    m.load_state_dict(state, strict=False)
    if cfg.tie_word_embeddings:
        m.tie_weights()
    lg = m(input_ids=ex["input_ids"], attention_mask=ex["attention_mask"], position_ids=ex["position_ids"]).logits
    real = ex["attention_mask"].bool()
    return (lg - ex["logits"])[real].abs().max().item()


def save_if_changed(tensors, path, metadata):
    """safetensors writes its metadata in hash order: skip rewriting an identical file
    so that re-running the script leaves git clean."""
    if os.path.exists(path):
        from safetensors import safe_open
        with safe_open(path, "pt") as f:
            same = f.metadata() == metadata and set(f.keys()) == set(tensors) and all(
                torch.equal(f.get_tensor(k), v) for k, v in tensors.items())
        if same:
            return
    save_file(tensors, path, metadata=metadata)


def build(arch, out_dir):
    cfg_cls, model_cls, extra, note = ARCHS[arch]
    kwargs = dict(COMMON, **extra)
    theta = set_rope_theta(kwargs)
    cfg = cfg_cls(**kwargs)
    cfg._attn_implementation = "eager"
    # per-arch seed so that changing one arch does not change the others
    seed = SEED + list(ARCHS).index(arch)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = model_cls(cfg).eval()
    randomize_(model, gen)
    if cfg.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    model.generation_config.bos_token_id = BOS_ID
    model.generation_config.eos_token_id = EOS_ID
    model.generation_config.pad_token_id = PAD_ID
    model.generation_config.do_sample = False

    d = os.path.join(out_dir, arch)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f not in ("README.md", "expected.safetensors"):
            os.remove(os.path.join(d, f))
    model.save_pretrained(d, safe_serialization=True)

    if arch == "llama":
        # Write this one in the pre-transformers-5 layout (top-level "rope_theta", as in
        # every config.json on the hub, e.g. SmolLM2), so the Rust loader is tested on
        # both layouts: llama = legacy top-level rope_theta, qwen2/qwen3 = rope_parameters.
        p = os.path.join(d, "config.json")
        c = json.load(open(p))
        rp = c.pop("rope_parameters")
        assert rp["rope_type"] == "default"
        c["rope_theta"] = rp["rope_theta"]
        with open(p, "w") as f:
            json.dump(c, f, indent=2, sort_keys=True)
            f.write("\n")

    # Reload from disk: the expected outputs are computed by the saved files.
    model = model_cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    assert model.config.rope_parameters["rope_theta"] == theta, model.config.rope_parameters
    state = load_file(os.path.join(d, "model.safetensors"))

    gen_in = torch.Generator().manual_seed(seed + 100)
    input_ids, attention_mask, position_ids = make_inputs(gen_in)
    logits, decode_tokens, decode_logits = expected_outputs(model, input_ids, attention_mask, position_ids)
    ex = dict(
        input_ids=input_ids.contiguous(),
        attention_mask=attention_mask.contiguous(),
        position_ids=position_ids.contiguous(),
        logits=logits.contiguous(),
        decode_tokens=decode_tokens.contiguous(),
        decode_logits=decode_logits.contiguous(),
    )
    assert all(torch.isfinite(v).all() for v in ex.values() if v.is_floating_point())
    facts = cross_checks(model, ex, arch)
    facts["max |logit change| if rope_theta were ignored (1e4)"] = rope_sensitivity(model_cls, model.config, state, ex)
    real = attention_mask.bool()
    facts["logit std (real positions)"] = logits[real].std().item()
    save_if_changed(
        ex,
        os.path.join(d, "expected.safetensors"),
        metadata={
            "generator": "scripts/make-parity-fixtures.py",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "seed": str(seed),
            "conventions": "left padding, pad id 0; position_ids = clamp(cumsum(mask)-1, 0); "
            "logits rows at mask==0 are not meaningful; decode_logits[:, s] = logits after feeding decode_tokens[:, s]",
        },
    )
    tensors = {k: (str(v.dtype).replace("torch.", ""), list(v.shape)) for k, v in state.items()}
    return dict(arch=arch, note=note, seed=seed, rope_theta=theta, config=model.config, facts=facts,
                tensors=tensors, decode_tokens=decode_tokens.tolist(), input_ids=input_ids.tolist())


def fmt_ids(rows):
    return "\n".join("    " + str(r) for r in rows)


def write_readme(out_dir, results):
    sizes = {}
    for r in results:
        d = os.path.join(out_dir, r["arch"])
        sizes[r["arch"]] = {f: os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d))}
    L = []
    L.append("# Parity fixtures (HF transformers reference)\n")
    L.append("Generated by `scripts/make-parity-fixtures.py` (developer-only; CI only reads these files):\n")
    L.append("```\npython3 -m venv .venv && .venv/bin/pip install -r scripts/requirements-dev.txt")
    L.append(".venv/bin/python scripts/make-parity-fixtures.py\n```\n")
    L.append(f"Versions: transformers {transformers.__version__}, torch {torch.__version__} (CPU, 1 thread), "
             f"safetensors {safetensors.__version__}, Python {sys.version.split()[0]}. Regenerating (same or other "
             "versions) is expected to give the same weights (seeded `torch.Generator`) and logits to ~1e-6; re-running with these versions gives identical tensors (only the JSON key order of the safetensors metadata may change).\n")
    L.append("## Models\n")
    L.append("All three: vocab 256, hidden 64, 2 layers, 4 attention heads, 2 KV heads (GQA, 2 q heads per kv head), "
             "intermediate 128 (SwiGLU, silu), RMSNorm eps 1e-6 (HF default), float32, bos 1, eos 2, pad 0. "
             "Built with `XForCausalLM(config)`, then every parameter re-drawn from a seeded generator: "
             "embeddings N(0,1/hidden), linear weights N(0,1/in_features), RMSNorm weights (incl. q_norm/k_norm) 1+0.3·N(0,1), "
             "biases 0.5·N(0,1) — so logits are O(1) and a missing bias/norm/scale shows. Saved with "
             "`save_pretrained(safe_serialization=True)`, then reloaded from disk to compute the expected outputs.\n")
    L.append("| dir | class | specifics | seed |\n| --- | --- | --- | --- |")
    for r in results:
        L.append(f"| `{r['arch']}/` | {r['config'].architectures[0]} | {r['note']} | {r['seed']} |")
    L.append("")
    L.append("`config.json` layout: transformers 5 writes RoPE as `\"rope_parameters\": {\"rope_type\": \"default\", "
             "\"rope_theta\": X}` and no top-level `rope_theta`. `qwen2/` and `qwen3/` keep that layout; `llama/` was "
             "rewritten to the older layout every hub model uses (top-level `\"rope_theta\": 100000.0`, no "
             "`rope_parameters`), so a loader must accept both (transformers itself loads both). Tied models "
             "(`llama`, `qwen3`) have no `lm_head.weight` in `model.safetensors` (`tie_word_embeddings: true`); "
             "`qwen2` has one.\n")
    L.append("## expected.safetensors\n")
    L.append("| tensor | dtype | shape | meaning |\n| --- | --- | --- | --- |")
    L.append("| `input_ids` | i64 | [3, 7] | left-padded batch, real lengths 7, 4, 2; pad id 0; real tokens in 3..255 |")
    L.append("| `attention_mask` | i64 | [3, 7] | 1 = real token, 0 = pad |")
    L.append("| `position_ids` | i64 | [3, 7] | `clamp(cumsum(mask, -1) - 1, min=0)`: each row's first real token has position 0; pads get 0 (same as HF `generate`) |")
    L.append(f"| `logits` | f32 | [3, 7, 256] | `model(input_ids, attention_mask, position_ids).logits` |")
    L.append(f"| `decode_tokens` | i64 | [3, {DECODE_STEPS}] | token fed at decode step s; step 0 feeds `argmax(logits[:, -1])`, step s>0 feeds `argmax(decode_logits[:, s-1])` |")
    L.append(f"| `decode_logits` | f32 | [3, {DECODE_STEPS}, 256] | logits returned by decode step s |")
    L.append("")
    L.append("Decode loop (KV cache from the prefill of the whole padded `[3,7]` batch): at step s feed `decode_tokens[:, s]` "
             "([3,1]) with `attention_mask = cat(mask, ones(3, s+1))` and `position_ids = position_ids[:, -1] + 1 + s`. "
             "Pads stay in the cache and stay masked.\n")
    L.append("**Meaningful rows:** `logits[b, t]` only where `attention_mask[b, t] == 1` (padded query positions "
             "attend to nothing real; eager attention gives them finite but arbitrary values: do not compare them). "
             "All `decode_logits` rows are meaningful. Tolerance in the Rust test: max |Δ| < 1e-4 (f32).\n")
    L.append("Checked by the script for every arch (all < 1e-4, the values measured are below):")
    L.append("- each row run alone, unpadded, positions 0..n-1, equals the padded batch at its real positions;")
    L.append("- the cached decode equals a full forward over prompt + decoded tokens;")
    L.append("- `model.generate(do_sample=False)` picks the same `decode_tokens` and its `output_logits` match.\n")
    L.append("| arch | row alone vs padded | cached vs full | generate vs expected | Δ if rope_theta ignored | logit std |")
    L.append("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        f = list(r["facts"].values())
        L.append(f"| {r['arch']} | " + " | ".join(f"{x:.2e}" if i < 4 else f"{x:.2f}" for i, x in enumerate(f)) + " |")
    L.append("")
    L.append("The 'rope_theta ignored' column is the largest change of a meaningful logit when the same weights are run "
             "with rope_theta 1e4 (HF default): a loader that drops rope_theta fails the 1e-4 test.\n")
    L.append("## Inputs and decoded tokens\n")
    for r in results:
        L.append(f"`{r['arch']}` input_ids:\n```\n{fmt_ids(r['input_ids'])}\n```\ndecode_tokens: `{r['decode_tokens']}`\n")
    L.append("## Weights (`model.safetensors`, all f32)\n")
    for r in results:
        L.append(f"`{r['arch']}`: " + ", ".join(f"`{k}` {v[1]}" for k, v in sorted(r["tensors"].items())
                                                 if ".layers." not in k or ".layers.0." in k) + " (layer 1 like layer 0)\n")
    L.append("## Sizes (bytes)\n")
    total = 0
    for a, fs in sizes.items():
        L.append(f"- `{a}/`: " + ", ".join(f"{f} {n}" for f, n in fs.items()))
        total += sum(fs.values())
    L.append(f"\nTotal {total} bytes (plus this README and `smollm2_reference.json`, see below).\n")
    L.append("## smollm2_reference.json\n")
    L.append("Written by `scripts/gguf-to-hf.py` from the real SmolLM2-135M-Instruct (the Q4_1 GGUF fetched by "
             "`scripts/fetch-assets.sh`, dequantized to f32 by transformers). It holds the greedy ChatML answer to "
             "\"What is the capital of France?\" (20 new tokens), the prompt and answer token ids, and the top-10 logits "
             "of the last prompt position. See that file's `notes` field.\n")
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write("\n".join(L))
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "parity"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out, exist_ok=True)
    results = []
    for arch in ARCHS:
        r = build(arch, args.out)
        print(arch, json.dumps(r["facts"]), file=sys.stderr)
        results.append(r)
    total = write_readme(args.out, results)
    print(f"wrote {args.out} ({total} bytes of fixtures)", file=sys.stderr)


if __name__ == "__main__":
    main()
