#!/usr/bin/env python3
"""Write an HF folder with Qwen2.5-0.5B-Instruct's shapes and random weights (stdlib only).

For memory and speed measurements of a 0.5B-class model with a 151,936-token vocabulary where the
real weights cannot be downloaded: memory and FLOPs depend on the shapes, not the values. The
weights are one block of N(0, 0.02) values repeated (norm weights are 1), so the forward stays
finite. The tokenizer is the Qwen tokenizer that scripts/fetch-assets.sh fetches.

Usage: python3 scripts/make-random-qwen.py OUT_DIR
"""

import array
import json
import os
import random
import shutil
import struct
import sys

CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": True,
    "hidden_act": "silu",
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "torch_dtype": "float32",
}


def tensors(c):
    h, i, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    kv = h // c["num_attention_heads"] * c["num_key_value_heads"]
    yield "model.embed_tokens.weight", (v, h), False
    for n in range(c["num_hidden_layers"]):
        p = f"model.layers.{n}."
        yield p + "input_layernorm.weight", (h,), True
        yield p + "post_attention_layernorm.weight", (h,), True
        for name, out in (("q", h), ("k", kv), ("v", kv)):
            yield p + f"self_attn.{name}_proj.weight", (out, h), False
            yield p + f"self_attn.{name}_proj.bias", (out,), False
        yield p + "self_attn.o_proj.weight", (h, h), False
        yield p + "mlp.gate_proj.weight", (i, h), False
        yield p + "mlp.up_proj.weight", (i, h), False
        yield p + "mlp.down_proj.weight", (h, i), False
    yield "model.norm.weight", (h,), True


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = random.Random(0)
    block = array.array("f", (rng.gauss(0.0, 0.02) for _ in range(1 << 16))).tobytes()
    ones = array.array("f", [1.0] * (1 << 16)).tobytes()
    header, offset, plan = {}, 0, []
    for name, shape, is_norm in tensors(CONFIG):
        n = 1
        for d in shape:
            n *= d
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + 4 * n]}
        plan.append((4 * n, ones if is_norm else block))
        offset += 4 * n
    meta = json.dumps(header).encode()
    meta += b" " * (-len(meta) % 8)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(meta)))
        f.write(meta)
        for size, src in plan:
            full, rest = divmod(size, len(src))
            for _ in range(full):
                f.write(src)
            f.write(src[:rest])
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
    cache = os.environ.get("AUGUR_CACHE", os.path.expanduser("~/.cache/augur"))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(cache, "qwen3-tokenizer", name), out)
    print(f"{out}: {offset / 1e9:.2f} GB of f32 weights")


if __name__ == "__main__":
    main()
