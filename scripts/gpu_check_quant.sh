#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build, run the int8 CUDA kernel tests (needle_qc._quant_cuda vs
# _quant_cpu, bit for bit) plainly and under compute-sanitizer (memcheck on everything, racecheck
# on the shared-memory kernels), summarise.
#
# Usage: scripts/gpu_check_quant.sh   (from anywhere; $PYTHON, else .venv/bin/python, else python3)
#        SANITIZE=0 scripts/gpu_check_quant.sh   skips the compute-sanitizer passes (the slow part)
#        BUILD=0 scripts/gpu_check_quant.sh      uses the extension already built
# Logs go to $OUT when set (the lent-machine convention), else build/gpu_check_quant/.
# Exit status: 0 when every step that could run passed and a GPU was visible.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
LOGS=${OUT:-build/gpu_check_quant}
mkdir -p "$LOGS"
TESTS=tests/csrc/test_quant_cuda.py
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
if [ "${BUILD:-1}" = 0 ]; then
  RESULT[build]="skipped (BUILD=0)"
else
  PIP=(-m pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .)
  if "${LOCK[@]}" "$PY" "${PIP[@]}" >"$LOGS/build.log" 2>&1; then
    RESULT[build]=ok
  else
    RESULT[build]="FAILED (see build.log)"
    FAIL=1
    tail -40 "$LOGS/build.log"
  fi
fi

step "device_count / kernel_info"
COUNT=$("$PY" -c "import needle_qc._quant_cuda as m
print(m.device_count())" 2>&1 | tail -1)
echo "device_count() = $COUNT"
RESULT[device_count]=$COUNT
"$PY" -c "import needle_qc._quant_cuda as m; print(m.kernel_info())" 2>&1 | tail -3

step "pytest $TESTS"
"$PY" -m pytest -q -rs -p no:cacheprovider "$TESTS" 2>&1 | tee "$LOGS/pytest.log" | tail -30
RC=${PIPESTATUS[0]}
[ "$RC" -eq 0 ] || FAIL=1
RESULT[pytest]="rc=$RC: $(grep -E '(passed|failed|error)' "$LOGS/pytest.log" | tail -1)"

# compute-sanitizer refuses some virtualised GPUs ("Device not supported"): report, don't guess.
sanitize() {  # name, tool, extra pytest args...
  local name=$1 tool=$2
  shift 2
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
    "$PY" -m pytest -q -x -p no:cacheprovider "$TESTS" "$@" >"$LOGS/$name.log" 2>&1
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
sanitize memcheck memcheck
# Shared-memory kernels: the dp4a GEMM (also behind conv), the weight-only GEMM, the reductions.
sanitize racecheck racecheck -k "gemm or conv or dynamic or weight_only"

step "summary"
for k in build device_count pytest memcheck racecheck; do
  printf '%-13s %s\n' "$k" "${RESULT[$k]:-not run}"
done
[ "$COUNT" -ge 1 ] 2>/dev/null || { echo "no GPU visible: the CUDA tests were skipped"; FAIL=1; }
exit $FAIL
