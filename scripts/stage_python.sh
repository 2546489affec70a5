#!/usr/bin/env bash
# Stages the lite_attention package with the extension built in a CMake build folder (configured
# with -DLITEATTN_PYTHON=ON) as <build>/pyroot, for PYTHONPATH: the GPU scripts run the Python
# tests and benchmarks on it without a pip install.
#   scripts/stage_python.sh <build-dir>
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$1"
EXT="$(find "$BUILD/python" -name '_ext*.so' 2>/dev/null | head -1 || true)"
[ -n "$EXT" ] || { echo "stage_python.sh: no built extension under $BUILD/python" >&2; exit 1; }
PYROOT="$BUILD/pyroot"
rm -rf "$PYROOT" && mkdir -p "$PYROOT"
cp -r "$ROOT/python/lite_attention" "$PYROOT/"
find "$PYROOT" -name '_ext*.so' -delete
cp "$EXT" "$PYROOT/lite_attention/"
