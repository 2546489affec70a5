#!/usr/bin/env bash
# Installs what building and testing liteattn needs, skipping whatever is already there:
# Debian packages (compiler tools, GoogleTest, Google Benchmark, libpng, ccache) and Python
# packages (CUTLASS headers, nanobind, scikit-build-core, numpy, pytest).
set -euo pipefail

need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
command -v ninja >/dev/null || need_apt+=(ninja-build)
command -v g++ >/dev/null || need_apt+=(g++)
command -v ccache >/dev/null || need_apt+=(ccache)
[ -f /usr/include/gtest/gtest.h ] || need_apt+=(libgtest-dev)
[ -f /usr/include/benchmark/benchmark.h ] || need_apt+=(libbenchmark-dev)
[ -f /usr/include/png.h ] || need_apt+=(libpng-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: please install: ${need_apt[*]} (apt-get install as root)" >&2
    exit 1
  fi
  echo "setup: apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
need_pip=()
"$PYTHON" -c "import cutlass_library" 2>/dev/null || need_pip+=("nvidia-cutlass==4.2.0.0")
"$PYTHON" -c "import nanobind" 2>/dev/null || need_pip+=(nanobind)
"$PYTHON" -c "import scikit_build_core" 2>/dev/null || need_pip+=(scikit-build-core)
"$PYTHON" -c "import numpy" 2>/dev/null || need_pip+=(numpy)
"$PYTHON" -c "import pytest" 2>/dev/null || need_pip+=(pytest)
if [ ${#need_pip[@]} -gt 0 ]; then
  echo "setup: pip install ${need_pip[*]}"
  "$PYTHON" -m pip install -q "${need_pip[@]}"
fi
