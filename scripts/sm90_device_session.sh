#!/usr/bin/env bash
# Developer helper for a GPU machine without package access: installs the CUTLASS wheel and the
# GoogleTest .deb from .whl/, runs scripts/gpu_check.sh, dumps the SASS of the
# bf16/hd128 kernel, runs bench/bench_sm90.py, and optionally builds and benchmarks a variant
# (VARIANT_FLAGS, e.g. -DLITEATTN_SM90_HD128_BLOCK_N=128). Results go to $OUT.
set -uo pipefail
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT" /tmp/logs /tmp/gt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site CUTLASS_DIR=/tmp/site/cutlass_library/source
for deb in .whl/*.deb; do dpkg -x "$deb" /tmp/gt; done
export CMAKE_ARGS="-DCMAKE_PREFIX_PATH=/tmp/gt/usr" LOG_DIR=/tmp/logs SANITIZER_TIMEOUT="${SANITIZER_TIMEOUT:-120}"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu,power.limit --format=csv,noheader
if [ "${SKIP_CHECK:-0}" != 1 ]; then
  timeout "${CHECK_TIMEOUT:-330}" scripts/gpu_check.sh build-gpu > "$OUT/check.log" 2>&1
  grep -E "random conf|FAILED|Failure|ok:|passed|config |spill|RACECHECK|ERROR SUMMARY" "$OUT/check.log" | head -30
  grep -E "Race reported|Read access|Write access" /tmp/logs/sanitizer_racecheck.log | head -12
else
  cmake -S . -B build-gpu -G Ninja -DCUTLASS_DIR=$CUTLASS_DIR $CMAKE_ARGS -DLITEATTN_BENCHMARKS=OFF -DLITEATTN_TOOLS=OFF > /tmp/logs/configure.log 2>&1
fi
ninja -C build-gpu liteattn_bench_sm90 > /tmp/logs/bench_build.log 2>&1 || tail -20 /tmp/logs/bench_build.log
grep -i spill /tmp/logs/build.log /tmp/logs/bench_build.log | head -5
EXE="$(find build-gpu -name liteattn_gpu_tests -type f | head -1)"
[ -n "$EXE" ] && cuobjdump -sass "$EXE" 2>/dev/null | gzip > "$OUT/sass.txt.gz"
PYTHONUNBUFFERED=1 timeout "${BENCH_TIMEOUT:-170}" python3 bench/bench_sm90.py --bench build-gpu/bench/sm90/liteattn_bench_sm90 \
  --repeats "${REPEATS:-5}" ${BENCH_SHAPES:+--shapes "$BENCH_SHAPES"} --out "$OUT" 2>/tmp/logs/bench.err | tail -8
grep -E "host" /tmp/logs/bench.err | head -6
if [ -n "${VARIANT_FLAGS:-}" ]; then
  cmake -S . -B build-var -G Ninja -DCUTLASS_DIR=$CUTLASS_DIR -DLITEATTN_BENCHMARKS=OFF -DLITEATTN_TESTS=OFF -DLITEATTN_TOOLS=OFF \
    "-DCMAKE_CXX_FLAGS=$VARIANT_FLAGS" "-DCMAKE_CUDA_FLAGS=$VARIANT_FLAGS" > /tmp/logs/var_configure.log 2>&1
  ninja -C build-var liteattn_bench_sm90 > /tmp/logs/var_build.log 2>&1 || tail -20 /tmp/logs/var_build.log
  grep -i spill /tmp/logs/var_build.log | head -3
  timeout "${VARIANT_TIMEOUT:-90}" build-var/bench/sm90/liteattn_bench_sm90 --shapes "${VARIANT_SHAPES:-1,32760,40;1,8192,40}" \
    --repeats "${REPEATS:-5}" --sparsity 0.5,0.9 > "$OUT/variant.json" 2>>/tmp/logs/bench.err
  python3 -c "
import json; r=json.load(open('$OUT/variant.json'))
for s in r['shapes']: print('variant $VARIANT_FLAGS', s['L'], s['H'], 'dense %.0f TF/s detect ovh %.1f%%' % (s['dense_tflops'], 100*s['detect_overhead']), ' '.join('%.2f:%.0f' % (p['sparsity'], p['tflops_on_computed']) for p in s['sparse']))"
fi
tar czf "$OUT/logs.tgz" -C /tmp logs
