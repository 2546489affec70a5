#!/usr/bin/env bash
# One command on a GPU machine (H100/H200; other GPUs of compute capability 8.0+ test the portable
# kernel only): configure and build, run the GPU tests of both kernels, run compute-sanitizer
# memcheck and racecheck on a small case per kernel (and on the Hopper kernel's work order), and
# `liteattn verify --backend cuda` where the CLI exists. Logs go to $LOG_DIR (default: <build>/gpu-check-logs).
#   scripts/gpu_check.sh [build-dir]
# Environment: CUTLASS_DIR (CUTLASS headers), CMAKE_ARGS (extra configure arguments, e.g.
# -DCMAKE_PREFIX_PATH=... where GoogleTest lives), JOBS, LOG_DIR, SANITIZER_TIMEOUT, SKIP_PYTHON=1
# (leave the Python tests out, e.g. after a change to a kernel only).
# Machines without libgtest-dev: unpack its .deb (dpkg -x libgtest-dev_*.deb /tmp/gt) and pass
# CMAKE_ARGS=-DCMAKE_PREFIX_PATH=/tmp/gt/usr (scripts/sm90_device_session.sh does this).
# Exit status 0 only when every step passed; the GPU tests exit 77 (skipped) without a GPU.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build-gpu}"
LOG_DIR="${LOG_DIR:-$BUILD/gpu-check-logs}"
JOBS="${JOBS:-$(nproc)}"
mkdir -p "$LOG_DIR"
status=0
step() { echo; echo "=== $* ==="; }
record() { if [ "$1" -ne 0 ]; then echo "FAILED: $2 (exit $1)"; status=1; else echo "ok: $2"; fi; }

step "configure"
configure() {
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLITEATTN_CUDA=ON \
    ${CUTLASS_DIR:+-DCUTLASS_DIR="$CUTLASS_DIR"} -DLITEATTN_BENCHMARKS=OFF ${CMAKE_ARGS:-} "$@" >> "$LOG_DIR/configure.log" 2>&1
}
PYTHON_TESTS=0
[ "${SKIP_PYTHON:-0}" != 1 ] && python3 -c "import nanobind, numpy, pytest" 2>/dev/null && PYTHON_TESTS=1
if ! configure -DLITEATTN_TOOLS=ON -DLITEATTN_PYTHON=$([ $PYTHON_TESTS = 1 ] && echo ON || echo OFF); then
  echo "configure with the CLI failed (missing libpng?): retrying without it"
  configure -DLITEATTN_TOOLS=OFF
fi
record $? configure
tail -3 "$LOG_DIR/configure.log"
[ $status -eq 0 ] || exit 1

step "build"
ninja -C "$BUILD" -j "$JOBS" liteattn liteattn_gpu_tests $([ $PYTHON_TESTS = 1 ] && echo _ext) 2>&1 | tee "$LOG_DIR/build.log" | grep -E "error|warning|spill|FAILED" | head -40
record "${PIPESTATUS[0]}" build
[ $status -eq 0 ] || exit 1
if ninja -C "$BUILD" -t targets all 2>/dev/null | grep -q '^liteattn_cli:'; then
  ninja -C "$BUILD" -j "$JOBS" liteattn_cli > "$LOG_DIR/build_cli.log" 2>&1 || echo "warning: the liteattn CLI did not build (see build_cli.log)"
fi

GPU_TESTS="$(find "$BUILD" -name liteattn_gpu_tests -type f -perm -u+x | head -1)"

step "GPU tests (ctest -L gpu)"
# -V: the log keeps every test's lines, so a test that skipped itself (GTEST_SKIP: e.g. one that
# needs two GPUs) is listed below instead of passing silently.
ctest --test-dir "$BUILD" -L gpu -V --output-on-failure > "$LOG_DIR/ctest_gpu.log" 2>&1
record "$?" "GPU tests"
grep -E "tests passed|tests failed|\[  (FAILED|SKIPPED) \]|^[0-9]+: skipped|: Failure$" "$LOG_DIR/ctest_gpu.log" | sort -u | head -40

if [ "${SKIP_SANITIZER:-0}" = 1 ]; then
  echo "compute-sanitizer: skipped (SKIP_SANITIZER=1)"
elif command -v compute-sanitizer >/dev/null; then
  for backend in sm90 sm80; do
    for tool in memcheck racecheck; do
      step "compute-sanitizer --tool $tool (small case and the work order, $backend)"
      # The work-order kernel runs before every skipping Hopper call; its own test under sm90 only.
      filter='GpuBackend.Small'
      [ $backend = sm90 ] && filter='GpuBackend.Small:WorkOrder.*'
      timeout "${SANITIZER_TIMEOUT:-600}" compute-sanitizer --tool "$tool" --error-exitcode 3 "$GPU_TESTS" --backend=$backend \
        --gtest_filter="$filter" 2>&1 | tee "$LOG_DIR/sanitizer_${tool}_$backend.log" | tail -6
      code=${PIPESTATUS[0]}
      [ "$code" -eq 77 ] && { echo "skipped: no GPU for $backend"; continue; }
      record "$code" "compute-sanitizer $tool ($backend)"
    done
  done
else
  echo "compute-sanitizer not found: skipped"
fi

CLI="$(find "$BUILD" -name liteattn -type f -perm -u+x | head -1)"
if [ -n "$CLI" ]; then
  step "liteattn verify --backend cuda"
  "$CLI" verify --backend cuda 2>&1 | tee "$LOG_DIR/verify.log" | tail -20
  record "${PIPESTATUS[0]}" "liteattn verify --backend cuda"
  step "liteattn verify --backend sm80 (the portable kernel)"
  "$CLI" verify --backend sm80 2>&1 | tee "$LOG_DIR/verify_sm80.log" | tail -20
  record "${PIPESTATUS[0]}" "liteattn verify --backend sm80"
else
  echo "liteattn CLI not built: verify skipped"
fi

if [ $PYTHON_TESTS = 1 ]; then
  step "Python tests (pytest tests/python, GPU tests included)"
  PYROOT="$BUILD/pyroot"
  "$ROOT/scripts/stage_python.sh" "$BUILD"
  (cd "$ROOT" && PYTHONPATH="$PYROOT${PYTHONPATH:+:$PYTHONPATH}" timeout "${PYTEST_TIMEOUT:-300}" python3 -X faulthandler -m pytest -q -rs tests/python) \
    2>&1 | tee "$LOG_DIR/pytest.log" | tail -25
  record "${PIPESTATUS[0]}" "Python tests"
fi

echo
[ $status -eq 0 ] && echo "gpu_check: all passed" || echo "gpu_check: FAILURES (logs in $LOG_DIR)"
exit $status
