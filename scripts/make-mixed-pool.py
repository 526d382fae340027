#!/usr/bin/env python3
"""A mixed-difficulty arithmetic pool for sampler ablations, measured on the base model.

Predictive prompt samplers only pay off where prompt choice matters: a pool with prompts the base
model always solves, never solves, and sometimes solves. This script
1. writes candidates over ten difficulty levels (sums of small numbers up to three-digit products),
2. samples each candidate K times with `augur generate` at T=1 and scores the samples with
   `augur score --task math`,
3. keeps up to N prompts per band (success <= 1/16: ~0, >= 15/16: ~1, in between) as
   `pool.jsonl`, and writes a held-out `test.jsonl` of the same level mix, the per-prompt success
   rates (`base-success.csv`) and their histogram (`base-success.svg`).

Usage: python3 scripts/make-mixed-pool.py AUGUR MODEL OUT_DIR [PER_LEVEL] [K] [PER_BAND] [TEMPERATURE]
       [MAX_NEW_TOKENS] [ADAPTER]
ADAPTER: a LoRA adapter folder (e.g. an `augur sft` checkpoint) the model samples with, so the
pool is measured on the warm-started policy a GRPO run with `[model] adapter` starts from.
Deterministic for a given model and seeds (candidate seed 11, test seed 12, sampling seed 0).
"""

import csv
import json
import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

LEVELS = [
    ("add-small", lambda r: (r.randint(0, 5), "+", r.randint(0, 5))),
    ("add-20", lambda r: (r.randint(1, 20), "+", r.randint(1, 20))),
    ("mul-1digit", lambda r: (r.randint(2, 9), "*", r.randint(2, 9))),
    ("add-2digit", lambda r: (r.randint(10, 99), "+", r.randint(10, 99))),
    ("sub-2digit", lambda r: (r.randint(50, 99), "-", r.randint(10, 49))),
    ("mul-2x1", lambda r: (r.randint(12, 99), "*", r.randint(3, 9))),
    ("add-3digit", lambda r: (r.randint(100, 999), "+", r.randint(100, 999))),
    ("mul-2x2", lambda r: (r.randint(12, 99), "*", r.randint(12, 99))),
    ("sub-3digit", lambda r: (r.randint(500, 999), "-", r.randint(100, 499))),
    ("mul-3x2", lambda r: (r.randint(100, 999), "*", r.randint(12, 99))),
]


def problem(rng, level, i, split):
    name, draw = LEVELS[level]
    a, op, b = draw(rng)
    ans = {"+": a + b, "-": a - b, "*": a * b}[op]
    return {
        "id": f"mixed-{split}-{level}-{i:04d}",
        "level": name,
        "question": f"What is {a} {op} {b}? Answer with just the number.",
        "answer": str(ans),
    }


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def svg_histogram(path, rates, k, temperature):
    bins = [0] * (k + 1)
    for p in rates:
        bins[round(p * k)] += 1
    w, h, pad = 640, 320, 40
    bw = (w - 2 * pad) / len(bins)
    top = max(bins) or 1
    bars = []
    for i, n in enumerate(bins):
        bh = (h - 2 * pad) * n / top
        x, y = pad + i * bw, h - pad - bh
        bars.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw - 2:.1f}" height="{bh:.1f}" fill="#4878a8"/>')
        bars.append(f'<text x="{x + bw / 2:.1f}" y="{y - 3:.1f}" font-size="10" text-anchor="middle">{n}</text>')
        if i % 2 == 0:
            bars.append(f'<text x="{x + bw / 2:.1f}" y="{h - pad + 14}" font-size="10" text-anchor="middle">{i}/{k}</text>')
    title = f"Base success of {len(rates)} candidate prompts ({k} samples each, T={temperature})"
    with open(path, "w") as f:
        f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif">'
                f'<rect width="{w}" height="{h}" fill="white"/>'
                f'<text x="{w / 2}" y="20" font-size="13" text-anchor="middle">{title}</text>'
                + "".join(bars)
                + f'<text x="{w / 2}" y="{h - 6}" font-size="11" text-anchor="middle">successes out of {k}</text></svg>')


def main():
    augur, model, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    per_level = int(sys.argv[4]) if len(sys.argv) > 4 else 30
    k = int(sys.argv[5]) if len(sys.argv) > 5 else 16
    per_band = int(sys.argv[6]) if len(sys.argv) > 6 else 40
    temperature = sys.argv[7] if len(sys.argv) > 7 else "1.0"
    max_new = sys.argv[8] if len(sys.argv) > 8 else "32"
    adapter = ["--adapter", sys.argv[9]] if len(sys.argv) > 9 else []
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(11)
    cands = [problem(rng, lv, i, "cand") for lv in range(len(LEVELS)) for i in range(per_level)]
    write_jsonl(out / "candidates.jsonl", [{"id": c["id"], "prompt": c["question"]} for c in cands])
    gen, scored = out / "samples.jsonl", out / "scored.jsonl"
    subprocess.run([augur, "generate", "--model", model, "--prompts", str(out / "candidates.jsonl"),
                    "--n", str(k), "--temperature", temperature, "--max-new-tokens", max_new, "--seed", "0",
                    "--output", str(gen)] + adapter, check=True)
    by_id = {c["id"]: c for c in cands}
    rows = []
    for line in open(gen):
        s = json.loads(line)
        rows.append({"id": s["id"], "completion": s["text"], "answer": by_id[s["id"]]["answer"]})
    write_jsonl(out / "to-score.jsonl", rows)
    subprocess.run([augur, "score", "--task", "math", "--input", str(out / "to-score.jsonl"),
                    "--output", str(scored)], check=True)
    wins, n = defaultdict(int), defaultdict(int)
    for line in open(scored):
        s = json.loads(line)
        n[s["id"]] += 1
        wins[s["id"]] += bool(s["correct"])
    rate = {i: wins[i] / n[i] for i in n}
    with open(out / "base-success.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "level", "question", "answer", "successes", "samples", "rate"])
        for c in cands:
            w.writerow([c["id"], c["level"], c["question"], c["answer"], wins[c["id"]], n[c["id"]], f"{rate[c['id']]:.4f}"])
    svg_histogram(out / "base-success.svg", list(rate.values()), k, temperature)
    lo, hi = 1 / 16 + 1e-9, 15 / 16 - 1e-9
    bands = {"zero": [], "mid": [], "one": []}
    for c in cands:
        p = rate[c["id"]]
        bands["zero" if p <= lo else "one" if p >= hi else "mid"].append(c)
    pool = [dict(c, base_success=rate[c["id"]]) for b in bands.values() for c in b[:per_band]]
    random.Random(5).shuffle(pool)
    write_jsonl(out / "pool.jsonl", pool)
    trng = random.Random(12)
    test = [problem(trng, lv, i, "test") for lv in range(len(LEVELS)) for i in range(24)]
    write_jsonl(out / "test.jsonl", test)
    total = len(rate)
    shares = {b: len(v) / total for b, v in bands.items()}
    print(json.dumps({"candidates": total, "shares": shares, "pool": len(pool),
                      "pool_bands": {b: min(len(v), per_band) for b, v in bands.items()},
                      "test": len(test)}))


if __name__ == "__main__":
    main()
