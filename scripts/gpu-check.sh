#!/usr/bin/env bash
# GPU validation in one run, sized for one 10-minute session on a GPU machine without network:
# the CUDA kernel tests (GPU against the CPU twins), decode tokens/s, and a short GRPO run on
# SmolLM2-135M with its generation and training tokens/s.
#
# Build beforehand, where the network is (the binaries then travel to the GPU machine):
#   eval "$(bash scripts/install-cuda.sh)"
#   export CARGO_TARGET_DIR=target-cuda
#   cargo build --release -p augur-cli --features cuda
#   cargo test --release -p augur-kernels -p augur-rollout \
#     --features augur-kernels/cuda,augur-rollout/cuda --no-run
# On the GPU machine (the CUDA 13 libraries on LD_LIBRARY_PATH, assets in ~/.cache/augur):
#   bash scripts/gpu-check.sh
# DEVICE=cpu runs the same steps on the CPU (the kernel tests then skip), STEPS sets the GRPO
# steps (default 4) and SAMPLES the decode samples per prompt (default 8).
set -euo pipefail
cd "$(dirname "$0")/.."
device="${DEVICE:-cuda}"
steps="${STEPS:-4}"
samples="${SAMPLES:-8}"
target="${CARGO_TARGET_DIR:-target-cuda}"
augur="$target/release/augur"
model="${AUGUR_CACHE:-$HOME/.cache/augur}/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
gpu_tests="$(ls -t "$target"/release/deps/gpu-* 2>/dev/null | grep -v '\.d$' | head -n1 || true)"
engine_tests="$(ls -t "$target"/release/deps/engine-* 2>/dev/null | grep -v '\.d$' | head -n1 || true)"
for f in "$augur" "$gpu_tests" "$engine_tests" "$model"; do
  [ -n "$f" ] && [ -e "$f" ] || { echo "missing ${f:-the gpu test binary}: build first (see the top of $0)" >&2; exit 1; }
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== kernel tests: CUDA against the CPU twins"
"$gpu_tests" --test-threads 1 --nocapture >"$work/kernels.log" 2>&1 || { cat "$work/kernels.log"; exit 1; }
grep -E "skipped|test result" "$work/kernels.log"
echo "== rollout: fused sampling on the GPU against CPU greedy"
"$engine_tests" gpu_ --nocapture >"$work/engine.log" 2>&1 || { cat "$work/engine.log"; exit 1; }
grep -E "skipped|test result" "$work/engine.log"

echo "== decode: 16 prompts x $samples samples x 128 new tokens, T = 1 ($device)"
python3 - datasets/arith/test.jsonl >"$work/prompts.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]).readlines()[:16]:
    print(json.dumps({"prompt": json.loads(line)["question"]}))
PY
"$augur" generate --model "$model" --prompts "$work/prompts.jsonl" --n "$samples" \
  --max-new-tokens 128 --device "$device" --output "$work/gen.jsonl" 2>&1 | grep "tok/s"

echo "== GRPO: $steps steps of configs/quickstart.toml ($device)"
"$augur" grpo --config configs/quickstart.toml --set model.device="$device" \
  --set algorithm.steps="$steps" --set eval.max_prompts=8 --set checkpoint.dir="$work/run" \
  >"$work/grpo.log" 2>&1 || { tail -20 "$work/grpo.log"; exit 1; }
python3 - "$work/run/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"reward_mean"' in l]
for r in rows:
    print(f"step {r['step']}: reward {r['reward_mean']:.3f}, generation {r['gen_tokens_per_s']:.0f} tok/s, "
          f"training {r['train_tokens_per_s']:.0f} tok/s, step {r['time_step_s']:.1f} s")
if not rows:
    sys.exit("no training steps in metrics.jsonl")
PY
