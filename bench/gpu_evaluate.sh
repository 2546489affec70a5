#!/usr/bin/env bash
# `liteattn evaluate` on a GPU machine (issue 6): builds the CLI with the sm90 backend and
# runs the criterion x order x threshold sweep on the Wan2.1-1.3B-like shape (21 x 30 x 52 =
# 32760 tokens, 12 heads, head dim 128, bf16). Results go to $OUT.
#   bench/gpu_evaluate.sh [build|run|all]
# Carried from the developer machine (ignored paths): .whl/ (the nvidia-cutlass wheel) and
# .evaldeb/ (Debian libpng-dev, libpng16-16, zlib1g-dev, zlib1g: `apt-get download` them), for
# images without libpng headers. Environment: STEPS (20), THRESHOLDS, CRITERIA, ORDERS.
set -uo pipefail
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT" /tmp/gt /tmp/logs
BUILD=build-gpu-eval
what="${1:-all}"
if [ "$what" != run ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/nvidia_cutlass*.whl || exit 1
  for deb in .evaldeb/*.deb; do dpkg -x "$deb" /tmp/gt; done
  cmake -S . -B $BUILD -G Ninja -DCMAKE_BUILD_TYPE=Release -DLITEATTN_CUDA=ON -DCUTLASS_DIR=/tmp/site/cutlass_library/source \
    -DCMAKE_PREFIX_PATH=/tmp/gt/usr -DLITEATTN_TESTS=OFF -DLITEATTN_BENCHMARKS=OFF -DLITEATTN_GPU_BENCH=OFF \
    -DLITEATTN_TOOLS=ON > /tmp/logs/configure.log 2>&1 || { tail -30 /tmp/logs/configure.log; exit 1; }
  ninja -C $BUILD liteattn_cli > /tmp/logs/build.log 2>&1 || { grep -E "error|Error" /tmp/logs/build.log | head -30; exit 1; }
  echo "built $BUILD/tools/liteattn"
fi
if [ "$what" != build ]; then
  export LD_LIBRARY_PATH=/tmp/gt/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  git rev-parse HEAD 2>/dev/null >> "$OUT/gpu.txt"
  $BUILD/tools/liteattn evaluate --backend cuda --preset wan13b-480p --steps "${STEPS:-20}" \
    --thresholds "${THRESHOLDS:--14,-10,-8,-6,-4,-3,-2}" --criteria "${CRITERIA:-running,previous}" \
    --orders "${ORDERS:-descending,alternate,diagonal_first}" \
    --out "$OUT/evaluation_wan13b.json" --md "$OUT/evaluation_wan13b_table.md" > "$OUT/evaluate.log" 2>&1
  echo "evaluate exit $?"; tail -50 "$OUT/evaluate.log"
fi
