#!/usr/bin/env bash
# Builds liteattn and runs the demo on the synthetic video workload: on the GPU when there is
# one (Wan2.1-1.3B 480p shape), on the CPU at reduced size otherwise. Arguments go to
# `liteattn demo` (see `build/tools/liteattn --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh >/dev/null
exec build/tools/liteattn demo --out build/demo.json --png build/demo.png "$@"
