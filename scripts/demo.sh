#!/usr/bin/env bash
# Builds liteattn and runs the demo on the synthetic video workload: on the GPU when there is
# one (Wan2.1-1.3B 480p shape), on the CPU at reduced size otherwise. Arguments go to
# `liteattn demo` (see `build/tools/liteattn --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "building liteattn (the first build compiles the sm_90a kernel: several minutes; log in build-demo.log)..."
if ! scripts/build.sh > build-demo.log 2>&1; then
  tail -30 build-demo.log
  echo "demo: the build failed (full log: build-demo.log)" >&2
  exit 1
fi
exec build/tools/liteattn demo --out build/demo.json --png build/demo.png "$@"
