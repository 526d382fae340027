#!/usr/bin/env python3
"""Writes datasets/arith/{train,test}.jsonl: small-number arithmetic (sums and differences up to 20, one-digit products) questions with integer answers.

Deterministic (seeded), so the files are reproducible. Each line: id, question, answer (a string), checked
by the math verifier (`augur score --task math`). Easy enough that SmolLM2-135M-Instruct solves a fraction of
them, which is what a quickstart GRPO run needs: groups with mixed rewards.
"""
import json
import random
import sys
from pathlib import Path


def make(rng: random.Random, i: int, split: str) -> dict:
    op = rng.choice(["+", "+", "-", "*"])
    if op == "+":
        a, b = rng.randint(1, 20), rng.randint(1, 20)
        ans = a + b
    elif op == "-":
        a = rng.randint(5, 20)
        b = rng.randint(1, a)
        ans = a - b
    else:
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        ans = a * b
    q = f"What is {a} {op} {b}? Answer with just the number."
    return {"id": f"arith-{split}-{i:05d}", "question": q, "answer": str(ans)}


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "datasets/arith")
    out.mkdir(parents=True, exist_ok=True)
    for split, n, seed in [("train", 2000, 1), ("test", 200, 2)]:
        rng = random.Random(seed)
        with open(out / f"{split}.jsonl", "w") as f:
            for i in range(n):
                f.write(json.dumps(make(rng, i, split)) + "\n")


if __name__ == "__main__":
    main()
