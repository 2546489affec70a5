#!/usr/bin/env bash
# Configures and builds liteattn (core, CPU reference, the sm_90a kernel when nvcc is present,
# the CLI, tests, benchmarks) into ./build. Extra arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# ccache: rewrite absolute paths under the checkout so that clones in other folders share hits.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}" CCACHE_NOHASHDIR=1
if [ ! -f build/build.ninja ] || [ $# -gt 0 ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
fi
cmake --build build --parallel "$(nproc)"
