#!/usr/bin/env bash
# Installs the pinned CUDA toolkit subset that `cargo build --features cuda` needs, from PyPI
# wheels, into a cache folder, so a machine without a GPU or a system CUDA (CI) compiles the GPU
# path. Prints the environment to export; `eval "$(bash scripts/install-cuda.sh)"` applies it.
#
# What the cuda build uses, and where it comes from:
# - nvcc + cicc + ptxas + crt/cccl headers: candle-kernels and augur's kernels/ compile .cu files
#   (cudaforge finds `nvcc` on PATH; cudarc reads the CUDA version from `nvcc --version`);
# - libcudart, libnvrtc, libcurand, libcublas, libcublasLt: candle enables cudarc's
#   `dynamic-linking`, so every binary links against them at build time;
# - libcuda (the driver API) ships with the NVIDIA driver, not in any wheel. Like the toolkit's
#   own `lib64/stubs/libcuda.so`, a link-time stub is built here that defines every `cu*` name
#   cuda.h declares; at run time the driver's real `libcuda.so.1` is loaded instead.
#
# The CUDA version is pinned (13.0: the first release whose nvcc ships on PyPI; the cu12 nvcc
# wheels hold only ptxas). A finished install is reused; a partial one is never visible (it is
# unpacked in a temporary folder and renamed into place).
set -euo pipefail

CUDA_VERSION=13.0
WHEELS=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-cccl==13.0.85
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-nvrtc==13.0.88
  nvidia-curand==10.4.0.35
  nvidia-cublas==13.0.0.19
)
PREFIX="${AUGUR_CUDA_HOME:-${AUGUR_CACHE:-$HOME/.cache/augur}/cuda-$CUDA_VERSION}"
STAMP="$PREFIX/.installed"

if ! [ -f "$STAMP" ] || [ "$(cat "$STAMP")" != "${WHEELS[*]}" ]; then
  mkdir -p "$(dirname "$PREFIX")"
  tmp="$(mktemp -d "$PREFIX.partial.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --no-compile \
    --target "$tmp/site" "${WHEELS[@]}" >&2
  mv "$tmp/site/nvidia/cu13" "$tmp/cuda"
  cd "$tmp/cuda"
  # The unversioned names the linker looks for (`-lcublas` → libcublas.so).
  for lib in cudart nvrtc curand cublas cublasLt; do
    real="$(ls lib/lib$lib.so.* | head -n1)"
    ln -sf "$(basename "$real")" "lib/lib$lib.so"
  done
  # nvcc.profile looks for headers and libraries under targets/x86_64-linux, as in a toolkit.
  mkdir -p targets/x86_64-linux
  ln -s ../../include targets/x86_64-linux/include
  ln -s ../../lib targets/x86_64-linux/lib
  ln -s lib lib64
  # The driver API stub: every function name cuda.h declares or #defines to a versioned one.
  mkdir -p lib/stubs
  grep -ohE '\bcu[A-Z][A-Za-z0-9_]*\b' include/cuda.h | sort -u |
    sed 's/.*/void &(void) {}/' >"$tmp/libcuda-stub.c"
  cc -shared -fPIC -w -Wl,-soname,libcuda.so.1 -o lib/stubs/libcuda.so "$tmp/libcuda-stub.c"
  cd - >/dev/null
  rm -rf "$PREFIX"
  mv "$tmp/cuda" "$PREFIX"
  printf '%s' "${WHEELS[*]}" >"$STAMP"
  echo "installed CUDA $CUDA_VERSION into $PREFIX" >&2
fi

"$PREFIX/bin/nvcc" --version >&2
cat <<EOF
export CUDA_HOME="$PREFIX"
export CUDA_ROOT="$PREFIX"
export PATH="$PREFIX/bin:\$PATH"
export LIBRARY_PATH="$PREFIX/lib:$PREFIX/lib/stubs\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$PREFIX/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export CUDA_COMPUTE_CAP="\${CUDA_COMPUTE_CAP:-80}"
EOF
