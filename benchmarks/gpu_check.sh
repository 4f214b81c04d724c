#!/usr/bin/env bash
# Everything a machine with a GPU should check, in one go, each result in $OUT:
#
#   OUT=/tmp/check benchmarks/gpu_check.sh          # on a GPU machine: device cuda
#   DEVICE=cpu TINY=1 OUT=/tmp/check benchmarks/gpu_check.sh   # the CPU smoke run (a test)
#
# summary.txt starts with the machine (Python, NumPy, CuPy, CUDA, nvidia-smi), then has
# one line per step with its exit status and time; each step logs to NAME.txt:
#   compile_modes  what each compiled-step optimisation is worth on DEVICE (fusion and
#                  CUDA graphs included)
#   bench_DEVICE   python -m benchmarks on DEVICE: eager and compiled, both dtypes,
#                  references, LSTM scaling in T and B (where the GPU starts to win),
#                  per-op overhead; the report, and DEVICE/results.json
#   bench_cpu      the same on the CPU, run alongside (other cores) for the comparison
#   tests          the test suite, CUDA backend included where CuPy sees a GPU
#   tasks          one full activity run (GRU), then tinygrad-ee all --quick, on DEVICE
# (Eight files in all: what a lent machine sends back. The scaling plots can be drawn
# again from the JSON with benchmarks.report.plot_scaling.) Each step has a time limit;
# a step cut short says so in summary.txt and the others go on.
# The GPU figures are timed while nothing else uses the GPU; the CPU benchmark shares
# the machine's cores with them (one BLAS thread each).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check}
DEVICE=${DEVICE:-cuda}
TINY=${TINY:-0}
PYTHON=${PYTHON:-python}
RUNS=$(mktemp -d)  # the runs' own files (checkpoints, figures) stay out of $OUT
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS COMMAND...: run it, log to $OUT/NAME.txt, note the outcome
    local name=$1 seconds=$2 start status
    shift 2
    start=$(date +%s)
    timeout "$seconds" "$@" >"$OUT/$name.txt" 2>&1
    status=$?
    echo "$name: exit $status after $(($(date +%s) - start)) s: $*" >>"$OUT/summary.txt"
    return $status
}

if [ "$TINY" = 1 ]; then
    BENCH=(--quick --dtype float32 --no-torch)
    MODES=(--model autoencoder --repeat 1)
    TESTS=(tests/test_compile.py -k "arguments_must or first_call")
    QUICK=(autoencoder --quick --epochs 1 --no-sweep)
    FULL=(activity --cell gru --quick --epochs 1)
    LIMITS=(60 120 120 120 120)  # compile_modes, bench DEVICE, bench cpu, tests, tasks
else  # sized to end within about 8 minutes on one H200 machine
    BENCH=(--repeat 3)
    MODES=(--model lstm --model gru --repeat 5)
    TESTS=()
    if "$PYTHON" -c "import xdist" 2>/dev/null; then TESTS=(-n 8); fi
    QUICK=(all --quick)
    FULL=(activity --cell gru)
    LIMITS=(80 210 480 190 200)
fi

bench() {  # bench DEVICE SECONDS: the report in bench_DEVICE.txt, the JSON in DEVICE/
    step "bench_$1" "$2" bash -c "$PYTHON -m benchmarks --device $1 ${BENCH[*]} \
        --json $RUNS/$1/results.json && mkdir -p $OUT/$1 && cp $RUNS/$1/results.json $OUT/$1/"
}

{
    "$PYTHON" --version
    "$PYTHON" -c 'import numpy; print("numpy", numpy.__version__)'
    "$PYTHON" -c 'import cupy; print("cupy", cupy.__version__, "CUDA", cupy.cuda.runtime.runtimeGetVersion())'
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
} >"$OUT/summary.txt" 2>&1
if [ "$DEVICE" != cpu ]; then  # the CPU figures, on other cores, while the GPU is measured
    bench cpu "${LIMITS[2]}" &
    CPU_BENCH=$!
fi
step compile_modes "${LIMITS[0]}" "$PYTHON" -m benchmarks.compile_modes --device "$DEVICE" "${MODES[@]}"
bench "$DEVICE" "${LIMITS[1]}"
step tests "${LIMITS[3]}" "$PYTHON" -m pytest -q -rs -p no:cacheprovider -p no:benchmark "${TESTS[@]}" &
TESTS_PID=$!
step tasks "${LIMITS[4]}" bash -c "$PYTHON -m tinygrad_ee.tasks ${FULL[*]} --device $DEVICE --no-progress --out $RUNS/full &&
    cat $RUNS/full/report.md && $PYTHON -m tinygrad_ee.tasks ${QUICK[*]} --device $DEVICE --no-progress --out $RUNS/quick"
wait "$TESTS_PID"
[ -n "${CPU_BENCH:-}" ] && wait "$CPU_BENCH"
rm -rf "$RUNS"
cat "$OUT/summary.txt"
! grep -qE "^[a-z_]+: exit [1-9]" "$OUT/summary.txt"  # the status: 0 when every step passed
