#!/usr/bin/env bash
# Builds llama.cpp once, outside git, from the source that node-llama-cpp ships on npm
# (llama/gitRelease.bundle), and prints the directory it lives in.
#
# Used by the GGUF fixture script (convert_hf_to_gguf.py, llama-quantize, the reference dumper)
# and by the benchmark (llama-bench). Nothing of llama.cpp is committed: the build lives in
# $TALLOW_CACHE (default ~/.cache/tallow) and is reused while the pinned version stays the same.
#
#   scripts/llama_cpp.sh          # build if missing, print the directory
#   LLAMA_CPP_JOBS=2 scripts/llama_cpp.sh
set -euo pipefail

NODE_LLAMA_CPP_VERSION=3.22.1
CACHE="${TALLOW_CACHE:-$HOME/.cache/tallow}"
ROOT="$CACHE/llama.cpp-node-llama-cpp-$NODE_LLAMA_CPP_VERSION"
SRC="$ROOT/src"
BUILD="$ROOT/build"
JOBS="${LLAMA_CPP_JOBS:-$(nproc)}"
TARGETS=(llama llama-quantize llama-bench)

if [[ -f "$ROOT/.built" ]]; then
  echo "$ROOT"
  exit 0
fi

mkdir -p "$ROOT"
if [[ ! -d "$SRC/.git" ]]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "node-llama-cpp@$NODE_LLAMA_CPP_VERSION" >/dev/null)
  tar -xzf "$work"/node-llama-cpp-*.tgz -C "$work" package/llama/gitRelease.bundle
  rm -rf "$SRC"
  git clone --quiet "$work/package/llama/gitRelease.bundle" "$SRC" 2>/dev/null
fi

# Shared libllama for the reference dumper; GGML_NATIVE so llama-bench runs at this CPU's best.
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
  -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=OFF >"$ROOT/cmake.log" 2>&1
cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}" >"$ROOT/build.log" 2>&1
touch "$ROOT/.built"
echo "$ROOT"
