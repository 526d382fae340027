"""How well GPS ranks the held-out prompts before it has seen any of them.

For each GPS run of the hold-out ablation: load its sampler state at the end of the hold-out
(checkpoint-<holdout_steps>/sampler.json) into `augur sampler`, give it the run's prompt
embeddings (prompt_embeddings.safetensors), and ask `predict` for every prompt. Over the held-out
prompts (recomputed as the trainer does: each id held out when a SplitMix64 hash of data.seed and
the id is below holdout_fraction) report Spearman rho of GPS's predicted success rate against the
base model's measured success rate (pool.jsonl `base_success`, 16 samples each). MoPPS's prior
predicts the same for every unseen prompt, so its rho there is undefined (no ranking at all).

Usage: python3 gps_unseen.py AUGUR_BINARY ABLATION_OUT POOL_JSONL   (stdlib only)
"""
import json
import struct
import subprocess
import sys
import tomllib
from pathlib import Path

M = (1 << 64) - 1


def held_out(seed, pid, fraction):
    st = (seed ^ 0x5DEECE66D1CE5EED) & M
    st ^= (pid * 0xD6E8FEB86659FD93) & M
    z = st = (st + 0x9E3779B97F4A7C15) & M
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    z ^= z >> 31
    return (z >> 11) / (1 << 53) < fraction


def ranks(x):
    order = sorted(range(len(x)), key=lambda i: x[i])
    r = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in order[i : j + 1]:
            r[k] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(x, y):
    rx, ry = ranks(x), ranks(y)
    n = len(x)
    mx, my = sum(rx) / n, sum(ry) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    return sxy / (sxx * syy) ** 0.5 if sxx > 0 and syy > 0 else float("nan")


def embeddings(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header["embeddings"]
    rows, dim = meta["shape"]
    lo, hi = meta["data_offsets"]
    flat = struct.unpack(f"<{rows * dim}f", data[lo:hi])
    return [list(flat[r * dim : (r + 1) * dim]) for r in range(rows)]


def main(augur, out, pool):
    base = [json.loads(l)["base_success"] for l in open(pool)]
    for run in sorted(Path(out, "runs").glob("gps-seed*")):
        cfg = tomllib.load(open(run / "config.toml", "rb"))
        s = cfg["sampler"]
        steps, fraction, seed = s["holdout_steps"], s["holdout_fraction"], cfg["data"]["seed"]
        state = json.load(open(run / f"checkpoint-{steps}" / "sampler.json"))["sampler"]
        emb = embeddings(run / "prompt_embeddings.safetensors")
        ids = list(range(len(emb)))
        reqs = [
            {"op": "register", "ids": ids, "embeddings": emb},
            {"op": "load", "state": state},
            {"op": "embeddings", "ids": ids, "data": emb},
            {"op": "predict", "ids": ids},
        ]
        p = subprocess.run(
            [augur, "sampler", "--method", "gps", "--seed", str(s["seed"]),
             "--set", f"gps.embedding_dim={len(emb[0])}"],
            input="".join(json.dumps(r) + "\n" for r in reqs),
            capture_output=True, text=True, check=True,
        )
        resp = [json.loads(l) for l in p.stdout.splitlines()]
        for r in resp:
            assert r["ok"], r
        mean = resp[-1]["mean"]
        held = [i for i in ids if held_out(seed, i, fraction)]
        other = [i for i in ids if i not in held]
        rho_h = spearman([mean[i] for i in held], [base[i] for i in held])
        rho_o = spearman([mean[i] for i in other], [base[i] for i in other])
        brier_h = sum((mean[i] - base[i]) ** 2 for i in held) / len(held)
        print(
            f"{run.name}: after step {steps}, {len(held)} held-out prompts never seen: "
            f"rho(GPS predicted, base success) = {rho_h:.2f}, Brier vs base success = {brier_h:.3f}, "
            f"predicted range {min(mean[i] for i in held):.2f}-{max(mean[i] for i in held):.2f}; "
            f"on the {len(other)} prompts it could see: rho = {rho_o:.2f}"
        )


if __name__ == "__main__":
    main(*sys.argv[1:4])
