#!/usr/bin/env python3
"""PyTorch `transformers` CPU baseline for augur's benchmarks (SmolLM2-135M-Instruct, HF folder
from scripts/gguf-to-hf.py). Prints one JSON line per measurement on stdout, e.g.

  {"engine": "transformers", "bench": "forward", "batch": 8, "seq_len": 128, "tokens_per_s": ...}
  {"engine": "transformers", "bench": "generate", "prompts": 16, "n": 8, "max_new_tokens": 128, "tokens_per_s": ...}

so that a Rust-side bench can print its numbers next to them.

  forward : full forward (no grad, f32, use_cache=False, logits for every position) of a
            batch x seq_len block of random token ids; median of --runs timed runs after --warmup.
  generate: the prompts (chat-templated, left-padded) x num_return_sequences=n, do_sample=True,
            temperature 1.0, top_k 0 and top_p 1.0 (plain sampling from the full softmax),
            max_new_tokens; tokens/s = generated tokens / wall time of the generate() call.
            Generated tokens are counted per row up to and including its first EOS
            (<|im_end|>, which is also the pad id), or max_new_tokens if it has none; the
            pad tokens HF appends after a row finished are not counted.

Usage:
  .venv/bin/python scripts/bench_hf.py [--bench forward|generate|all] [--model DIR]
        [--prompts FILE.jsonl] [--threads 2] [--seed 0]
--prompts: JSONL, one prompt per line: {"prompt": "..."} / {"question": "..."} / {"text": "..."}
(wrapped as one user message), {"messages": [...]} (used as is), or a bare JSON string.
The first 16 lines are used (--num-prompts); the default file is datasets/bench/generate-16.jsonl,
the list augur's bench example reads too.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

CACHE = os.environ.get("AUGUR_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "augur"))
DEFAULT_MODEL = os.path.join(CACHE, "smollm2-135m-instruct-hf")

# The prompt list augur's bench reads too, so both engines generate for the same batch.
DEFAULT_PROMPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "datasets", "bench",
                               "generate-16.jsonl")


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def emit(rec):
    print(json.dumps(rec), flush=True)


def load_prompts(path, k):
    items = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                items.append(json.loads(line))
    out = []
    for it in items[:k]:
        if isinstance(it, str):
            out.append([{"role": "user", "content": it}])
        elif "messages" in it:
            out.append(it["messages"])
        else:
            key = next((k_ for k_ in ("prompt", "question", "text") if k_ in it), None)
            if key is None:
                sys.exit(f"bench_hf: cannot find a prompt in {it!r}")
            out.append([{"role": "user", "content": it[key]}])
    if len(out) < k:
        sys.exit(f"bench_hf: need {k} prompts, got {len(out)}")
    return out


def common(args, model):
    return {
        "engine": "transformers",
        "model": os.path.basename(os.path.normpath(args.model)),
        "dtype": "f32",
        "threads": torch.get_num_threads(),
        "attn": model.config._attn_implementation,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        # 1-min load average at the end: the machine is shared, a load above the thread
        # count means other processes competed for the cores and the number is pessimistic
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


@torch.no_grad()
def bench_forward(args, model):
    g = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(3, model.config.vocab_size, (args.batch, args.seq_len), generator=g)
    mask = torch.ones_like(ids)
    times = []
    for i in range(args.warmup + args.runs):
        t0 = time.perf_counter()
        out = model(input_ids=ids, attention_mask=mask, use_cache=False)
        _ = out.logits[0, 0, 0].item()
        dt = time.perf_counter() - t0
        del out
        if i >= args.warmup:
            times.append(dt)
    med = statistics.median(times)
    rec = {"bench": "forward", "batch": args.batch, "seq_len": args.seq_len,
           "tokens_per_s": round(args.batch * args.seq_len / med, 1), "median_s": round(med, 4),
           "runs_s": [round(t, 4) for t in times], "warmup": args.warmup, "grad": False,
           "logits": "all positions", "peak_rss_mb": round(peak_rss_mb(), 1)}
    emit({**common(args, model), **rec})


@torch.no_grad()
def bench_generate(args, model, tok):
    convs = load_prompts(args.prompts, args.num_prompts)
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    texts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in convs]
    enc = tok(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    prompt_tokens = int(enc["attention_mask"].sum())
    eos = tok.eos_token_id
    kw = dict(do_sample=True, temperature=args.temperature, top_k=0, top_p=1.0,
              pad_token_id=tok.pad_token_id, eos_token_id=eos)
    # warm-up: one prompt, a few tokens (one-time allocations, thread pool start)
    model.generate(input_ids=enc["input_ids"][:1], attention_mask=enc["attention_mask"][:1],
                   max_new_tokens=4, **kw)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    seqs = model.generate(**enc, max_new_tokens=args.max_new_tokens, num_return_sequences=args.n, **kw)
    wall = time.perf_counter() - t0
    gen = seqs[:, enc["input_ids"].shape[1]:]
    counts = []
    for row in gen.tolist():
        n = len(row)
        if eos in row:
            n = row.index(eos) + 1
        counts.append(n)
    total = sum(counts)
    rows = len(counts)
    rec = {"bench": "generate", "prompts": len(convs), "n": args.n, "rows": rows,
           "max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_k": 0, "top_p": 1.0,
           "prompt_tokens": prompt_tokens, "padded_prompt_len": int(enc["input_ids"].shape[1]),
           "generated_tokens": total, "finished_eos": sum(1 for c, r in zip(counts, gen.tolist()) if eos in r),
           "mean_completion_len": round(total / rows, 1), "wall_s": round(wall, 2),
           "tokens_per_s": round(total / wall, 1), "seed": args.seed, "peak_rss_mb": round(peak_rss_mb(), 1)}
    emit({**common(args, model), **rec})
    if args.show:
        for r in range(0, rows, args.n):
            print(f"--- {convs[r // args.n][-1]['content']!r} -> "
                  f"{tok.decode(gen[r][:counts[r]], skip_special_tokens=True)!r}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", choices=["forward", "generate", "all"], default="all")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--prompts", default=DEFAULT_PROMPTS, help="JSONL file of prompts (default: %(default)s)")
    ap.add_argument("--num-prompts", type=int, default=16)
    ap.add_argument("--n", type=int, default=8, help="num_return_sequences per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--show", action="store_true", help="print the first sample of each prompt to stderr")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    if not os.path.exists(os.path.join(args.model, "config.json")):
        sys.exit(f"bench_hf: no HF model at {args.model}: run scripts/fetch-assets.sh and scripts/gguf-to-hf.py")
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    if args.bench in ("forward", "all"):
        bench_forward(args, model)
    if args.bench in ("generate", "all"):
        bench_generate(args, model, tok)


if __name__ == "__main__":
    main()
