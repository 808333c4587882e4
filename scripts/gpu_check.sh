#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build, run the CUDA tests plainly and under compute-sanitizer
# (memcheck on everything, racecheck on the shared-memory kernels), summarise.
#
# Usage: scripts/gpu_check.sh [ndarray|quant|lowering|all]   (default all: the NDArray backend's
#        tests, the int8 kernels' tests, needle_qc._quant_cuda vs _quant_cpu bit for bit, then
#        compile(target="cuda") on zoo models vs target="cpu")
#        SANITIZE=0 ...   skips the compute-sanitizer passes (the slow part)
#        BUILD=0 ...      uses the extensions already built
# Uses $PYTHON, else .venv/bin/python, else python3. Logs go to $OUT when set (the lent-machine
# convention), else build/gpu_check/. Exit status: 0 when every step that could run passed and a
# GPU was visible.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
LOGS=${OUT:-build/gpu_check}
mkdir -p "$LOGS"
case "${1:-all}" in
  ndarray) SUITES=(ndarray) ;;
  quant) SUITES=(quant) ;;
  lowering) SUITES=(lowering) ;;
  all) SUITES=(ndarray quant lowering) ;;
  *) echo "usage: $0 [ndarray|quant|lowering|all]" >&2; exit 2 ;;
esac
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
declare -A RESULT
FAIL=0
LOCK=()
command -v flock >/dev/null && LOCK=(flock build.lock)  # `make native` takes the same lock

step() { echo; echo "=== $1"; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || true
nvcc --version 2>&1 | tail -1
"$PY" --version

step "build (editable install, offline: --no-build-isolation --no-deps)"
PIP=(-m pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .)
if [ "${BUILD:-1}" = 0 ]; then
  RESULT[build]="skipped (BUILD=0)"
elif "${LOCK[@]}" "$PY" "${PIP[@]}" >"$LOGS/build.log" 2>&1; then
  RESULT[build]=ok
else
  RESULT[build]="FAILED (see build.log)"
  FAIL=1
  tail -40 "$LOGS/build.log"
fi

step "device_count / kernel_info"
COUNT=$("$PY" -c "from needle.backend_ndarray import ndarray_backend_cuda as m
print(m.device_count())" 2>&1 | tail -1)
echo "device_count() = $COUNT"
RESULT[device_count]=$COUNT
"$PY" -c "import needle_qc._quant_cuda as m; print(m.kernel_info())" 2>&1 | tail -3

pytest_suite() {  # name, test file
  step "pytest $2"
  "$PY" -m pytest -q -rs -p no:cacheprovider "$2" 2>&1 | tee "$LOGS/$1.log" | tail -30
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || FAIL=1
  RESULT[$1]="rc=$rc: $(grep -E '(passed|failed|error)' "$LOGS/$1.log" | tail -1)"
}

# compute-sanitizer refuses some virtualised GPUs ("Device not supported"): report, don't guess.
sanitize() {  # name, tool, test file, extra pytest args...
  local name=$1 tool=$2 tests=$3
  shift 3
  step "compute-sanitizer --tool $tool"
  if [ "${SANITIZE:-1}" = 0 ]; then
    RESULT[$name]="skipped (SANITIZE=0)"
    return
  fi
  if ! command -v compute-sanitizer >/dev/null; then
    RESULT[$name]="skipped (compute-sanitizer not on PATH)"
    return
  fi
  compute-sanitizer --tool "$tool" --error-exitcode 99 --print-limit 20 \
    "$PY" -m pytest -q -x -p no:cacheprovider "$tests" "$@" >"$LOGS/$name.log" 2>&1
  local rc=$?
  tail -15 "$LOGS/$name.log"
  local summary
  summary=$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$LOGS/$name.log" | tail -1)
  if grep -q "Device not supported" "$LOGS/$name.log"; then
    RESULT[$name]="unsupported on this machine (Device not supported)"
  else
    RESULT[$name]="rc=$rc ${summary:-no summary line}"
    [ "$rc" -eq 0 ] || FAIL=1
  fi
}
KEYS=(build device_count)
for suite in "${SUITES[@]}"; do
  if [ "$suite" = ndarray ]; then
    tests=tests/csrc/test_cuda_backend.py race="matmul or reduc"
  elif [ "$suite" = lowering ]; then
    # The same kernels as the quant suite, called by the lowering: memcheck only.
    tests=tests/needle_qc/test_lowering_cuda.py race=""
  else
    # Shared-memory kernels: the dp4a GEMM (also behind conv), the weight-only GEMM.
    tests=tests/csrc/test_quant_cuda.py race="gemm or conv or dynamic or weight_only"
  fi
  pytest_suite "$suite-pytest" "$tests"
  sanitize "$suite-memcheck" memcheck "$tests"
  if [ -n "$race" ]; then
    sanitize "$suite-racecheck" racecheck "$tests" -k "$race"
  else
    RESULT[$suite-racecheck]="skipped (its kernels are racechecked by the quant suite)"
  fi
  KEYS+=("$suite-pytest" "$suite-memcheck" "$suite-racecheck")
done

step "summary"
for k in "${KEYS[@]}"; do
  printf '%-18s %s\n' "$k" "${RESULT[$k]:-not run}"
done
[ "$COUNT" -ge 1 ] 2>/dev/null || { echo "no GPU visible: the CUDA tests were skipped"; FAIL=1; }
exit $FAIL
