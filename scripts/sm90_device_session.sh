#!/usr/bin/env bash
# Developer helper for a GPU machine without package access: one call that checks both GPU
# kernels (gpu_check.sh) and measures the Hopper kernel. Results go to $OUT (default /tmp/out).
#   1. installs the CUTLASS wheel (.whl/*.whl) and unpacks the .debs in .whl/ and .evaldeb/
#      (GoogleTest, libpng) under /tmp/gt;
#   2. starts building build-gpu in the background (CPU), and, when AB_VARIANTS is set
#      ("name=FLAGS;name=FLAGS", FLAGS = C++ and CUDA compile definitions such as -DLITEATTN_SM90_X=1, or
#      empty for the tree as it is, or @DIR for another source tree, e.g. an older revision unpacked
#      with `git archive REV | tar -x -C DIR` into an ignored folder carried along), one benchmark
#      build per variant;
#   3. runs the variants' benchmarks interleaved (AB_ROUNDS rounds, default 2, every other round in
#      reverse order) on AB_SHAPES at AB_SPARSITY (random
#      masks; AB_WORKLOAD=1 adds the workload's masks) and prints dense and sparse TFLOP/s: an A/B comparison on the same card in the same minute, while build-gpu
#      finishes on the CPU (GPU times come from CUDA events);
#      each variant's run windows go to ab_windows.txt, and scripts/ab_clock_summary.py $OUT
#      pairs them with the clock and power samples in smi.csv;
#   4. scripts/gpu_check.sh (GPU tests, compute-sanitizer, verify, Python tests) unless SKIP_CHECK=1;
#   5. bench/bench_sm90.py (the full benchmark with cuDNN SDPA), bench/python_overhead.py and
#      bench/interleaved_vs_cudnn.py unless SKIP_BENCH=1;
#   6. NCU=1: an Nsight Compute profile of one dense call at NCU_SHAPE (clocks left alone).
set -uo pipefail
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT" /tmp/logs /tmp/gt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site CUTLASS_DIR=/tmp/site/cutlass_library/source
for deb in .whl/*.deb .evaldeb/*.deb; do [ -f "$deb" ] && dpkg -x "$deb" /tmp/gt; done
export LD_LIBRARY_PATH=/tmp/gt/usr/lib/x86_64-linux-gnu:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export CMAKE_ARGS="-DCMAKE_PREFIX_PATH=/tmp/gt/usr" LOG_DIR=/tmp/logs SANITIZER_TIMEOUT="${SANITIZER_TIMEOUT:-150}"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu,power.limit --format=csv,noheader | tee "$OUT/gpu.txt"

# 2. Builds in the background; gpu_check.sh below finds build-gpu up to date.
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DLITEATTN_CUDA=ON -DCUTLASS_DIR="$CUTLASS_DIR" $CMAKE_ARGS \
  -DLITEATTN_BENCHMARKS=OFF -DLITEATTN_GPU_BENCH=ON -DLITEATTN_TOOLS=ON -DLITEATTN_PYTHON=ON > /tmp/logs/configure.log 2>&1 \
  || tail -20 /tmp/logs/configure.log
need_main_build=1
[ "${SKIP_CHECK:-0}" = 1 ] && [ "${SKIP_BENCH:-0}" = 1 ] && [ "${NCU:-0}" != 1 ] && need_main_build=0
build_pid=
if [ $need_main_build = 1 ]; then
  ninja -C build-gpu > /tmp/logs/build_all.log 2>&1 &
  build_pid=$!
fi
# SM clock, power and temperature every 250 ms while the GPU works (power limits move clocks).
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 250 > "$OUT/smi.csv" 2>/dev/null &
smi_pid=$!
variant_pids=()
IFS=';' read -ra variants <<< "${AB_VARIANTS:-}"
for v in "${variants[@]}"; do
  name="${v%%=*}" flags="${v#*=}" source=.
  if [ "${flags#@}" != "$flags" ]; then source="${flags#@}"; flags=; fi
  (cmake -S "$source" -B "build-ab-$name" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLITEATTN_CUDA=ON -DCUTLASS_DIR="$CUTLASS_DIR" \
     -DLITEATTN_TESTS=OFF -DLITEATTN_TOOLS=OFF -DLITEATTN_PYTHON=OFF -DLITEATTN_BENCHMARKS=OFF -DLITEATTN_GPU_BENCH=ON \
     "-DCMAKE_CXX_FLAGS=$flags" "-DCMAKE_CUDA_FLAGS=$flags" > "/tmp/logs/ab_configure_$name.log" 2>&1 &&
   ninja -C "build-ab-$name" liteattn_bench_sm90 > "/tmp/logs/ab_build_$name.log" 2>&1) &
  variant_pids+=($!)
done

# 3. A/B runs, two rounds, interleaved.
if [ ${#variants[@]} -gt 0 ]; then
  for pid in "${variant_pids[@]}"; do wait "$pid"; done
  grep -il spill /tmp/logs/ab_build_*.log
  for round in $(seq "${AB_ROUNDS:-2}"); do
    # Even rounds run the variants in reverse order: the card warms within a round, and three
    # A/Bs that kept one order read the second variant 0.5-1 % slower dense for changes with no
    # clear cause for it (bench/NOTES.md runs 59-61), which the order may explain.
    order=("${variants[@]}")
    if [ $((round % 2)) = 0 ]; then order=(); for ((i = ${#variants[@]} - 1; i >= 0; --i)); do order+=("${variants[i]}"); done; fi
    for v in "${order[@]}"; do
      name="${v%%=*}"
      exe="build-ab-$name/bench/sm90/liteattn_bench_sm90"
      [ -x "$exe" ] || { echo "variant $name did not build"; tail -5 "/tmp/logs/ab_build_$name.log"; continue; }
      start=$(date +%s.%N)
      # A variant that hangs (a pipeline or barrier bug) must not take the whole call with it.
      timeout "${AB_RUN_TIMEOUT:-120}" "$exe" --shapes "${AB_SHAPES:-1,32760,40;1,8192,40}" --repeats "${REPEATS:-5}" --sparsity "${AB_SPARSITY:-0.5,0.9}" --workload "${AB_WORKLOAD:-0}" \
        > /tmp/ab.json 2>>/tmp/logs/ab.err || { echo "variant $name failed"; tail -5 /tmp/logs/ab.err; continue; }
      python3 -c "
import json; r = json.load(open('/tmp/ab.json'))
for s in r['shapes']:
    print('round $round', '$name', s['L'], s['H'], 'dense %.0f TF/s, detect %+.1f%%,' % (s['dense_tflops'], 100 * s['detect_overhead']),
          ' '.join('s=%.2f: %.0f' % (p['sparsity'], p['tflops_on_computed']) for p in s['sparse']),
          ' workload', ' '.join('s=%.2f: %.0f' % (p['sparsity'], p['tflops_on_computed']) for p in s.get('workload_sparse', [])))" | tee -a "$OUT/ab.txt"
      cp /tmp/ab.json "/tmp/logs/ab_${round}_${name}.json"  # all numbers of the run, in logs.tgz
      # The variant's time window, to match with the clock and power samples in smi.csv.
      echo "$round $name $start $(date +%s.%N)" >> "$OUT/ab_windows.txt"
    done
  done
fi
if [ -n "$build_pid" ]; then
  wait $build_pid || { echo "build failed"; grep -E "error" /tmp/logs/build_all.log | head -20; }
  grep -iE "spill|warning" /tmp/logs/build_all.log | head -5
fi

# 4. Correctness.
if [ "${SKIP_CHECK:-0}" != 1 ]; then
  timeout "${CHECK_TIMEOUT:-400}" scripts/gpu_check.sh build-gpu > "$OUT/check.log" 2>&1
  grep -E "random conf|FAILED|Failure|ok:|passed|failed|config |RACECHECK|ERROR SUMMARY|Fatal Python|File \"" "$OUT/check.log" | head -40
fi

# 5. Performance against cuDNN.
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  PYTHONUNBUFFERED=1 timeout "${BENCH_TIMEOUT:-240}" python3 bench/bench_sm90.py --bench build-gpu/bench/sm90/liteattn_bench_sm90 \
    --repeats "${REPEATS:-5}" ${BENCH_SHAPES:+--shapes "$BENCH_SHAPES"} --out "$OUT" 2>/tmp/logs/bench.err | tail -12
  grep -E "host|workload" /tmp/logs/bench.err | head -12
  # Host time per call of the Python API, on the staged package (gpu_check.sh stages it too).
  [ -d build-gpu/pyroot ] || scripts/stage_python.sh build-gpu
  [ -d build-gpu/pyroot ] && PYTHONPATH="build-gpu/pyroot:$PYTHONPATH" timeout 120 python3 bench/python_overhead.py \
    2>&1 | tee "$OUT/python_overhead.json" | tail -3
  # Dense against cuDNN call by call, in one thermal state.
  [ -d build-gpu/pyroot ] && PYTHONPATH="build-gpu/pyroot:$PYTHONPATH" timeout 180 python3 bench/interleaved_vs_cudnn.py \
    --out "$OUT/interleaved_vs_cudnn.json" 2>&1 | tail -4
fi

# 6. Profile.
if [ "${NCU:-0}" = 1 ] && command -v ncu >/dev/null; then
  timeout "${NCU_TIMEOUT:-150}" ncu --clock-control none -k regex:attention_fwd --launch-skip 20 --launch-count 1 \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats \
    --section InstructionStats --section LaunchStats --section SourceCounters \
    build-gpu/bench/sm90/liteattn_bench_sm90 --shapes "${NCU_SHAPE:-1,8192,8}" --repeats 3 --sparsity 0.5 --workload 0 \
    > "$OUT/ncu.txt" 2>&1
  grep -E "Duration|Compute \(SM\) Throughput|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|Stall" "$OUT/ncu.txt" | head -20
fi
kill $smi_pid 2>/dev/null
tar czf "$OUT/logs.tgz" -C /tmp logs
