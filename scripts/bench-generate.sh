#!/usr/bin/env bash
# Issue #4's generation benchmark, augur and Python `transformers` side by side in one run:
# SmolLM2-135M-Instruct (the same f32 HF folder for both), the 16 prompts of
# datasets/bench/generate-16.jsonl x 8 samples, 128 new tokens, temperature 1.0, CPU.
#
#   bash scripts/bench-generate.sh [THREADS ...]      (default: 1 2)
#
# For each thread count it runs augur's bench example, then scripts/bench_hf.py, one after
# the other (never both at once: they would share the cores), prints both JSON lines and
# the throughput ratio augur / transformers. Needs the assets (scripts/fetch-assets.sh),
# the HF folder (scripts/gguf-to-hf.py) and a venv with torch + transformers at .venv
# (scripts/requirements-dev.txt). The 1-minute load average is printed with each line:
# on a shared machine a load above the thread count makes both numbers pessimistic.
set -euo pipefail
cd "$(dirname "$0")/.."

AUGUR_CACHE="${AUGUR_CACHE:-$HOME/.cache/augur}"
HF_DIR="$AUGUR_CACHE/smollm2-135m-instruct-hf"
PY="${PYTHON:-.venv/bin/python}"
PROMPTS=datasets/bench/generate-16.jsonl
[ -f "$HF_DIR/config.json" ] || { echo "bench-generate: no HF folder at $HF_DIR (run scripts/fetch-assets.sh, then scripts/gguf-to-hf.py)" >&2; exit 1; }
"$PY" -c 'import torch, transformers' 2>/dev/null || { echo "bench-generate: $PY lacks torch/transformers (pip install -r scripts/requirements-dev.txt)" >&2; exit 1; }

cargo build --release -q -p augur-rollout --example bench
THREADS=("$@")
[ ${#THREADS[@]} -gt 0 ] || THREADS=(1 2)
for t in "${THREADS[@]}"; do
    augur=$(RAYON_NUM_THREADS="$t" target/release/examples/bench "$HF_DIR" generate --prompts "$PROMPTS" | tail -n1)
    load_a=$(cut -d' ' -f1 /proc/loadavg)
    hf=$("$PY" scripts/bench_hf.py --bench generate --model "$HF_DIR" --prompts "$PROMPTS" --threads "$t" | tail -n1)
    load_h=$(cut -d' ' -f1 /proc/loadavg)
    echo "$augur"
    echo "$hf"
    "$PY" - "$augur" "$hf" "$t" "$load_a" "$load_h" <<'EOF'
import json, sys
a, h = json.loads(sys.argv[1]), json.loads(sys.argv[2])
t, la, lh = sys.argv[3:6]
print(f"threads {t}: augur {a['tokens_per_sec']:.1f} tok/s ({a['generated_tokens']} tokens, load {la}), "
      f"transformers {h['tokens_per_s']:.1f} tok/s ({h['generated_tokens']} tokens, load {lh}), "
      f"ratio {a['tokens_per_sec'] / h['tokens_per_s']:.2f}x; peak RSS augur {a['peak_rss_kb'] / 1024:.0f} MB, "
      f"transformers {h['peak_rss_mb']:.0f} MB")
EOF
done
