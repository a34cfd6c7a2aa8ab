#!/usr/bin/env bash
# One prepared GPU check of xpnet's device paths (about 4 minutes on an H200).
#
#   OUT=/path/for/logs bash tools/gpu_session.sh        # from the repository root
#
# Stages (each with its own time limit, each logged to $OUT/<stage>.log; a failing stage
# does not stop the next ones, so one run finds every compile error and mismatch):
#   1. env       GPU, driver, CuPy, PyTorch
#   2. compile   every fused kernel family and type variant with NVRTC
#   3. kernels   tests/test_gpu_kernels*.py, test_gpu_sync.py, test_kernel_budgets.py:
#                each fused kernel against the CPU op on gpu(0) (float32/float64,
#                gradients), zero syncs per Estimator step under cupyx.allow_synchronize
#   4. placement the gpu(0) cases of the core tests (-k gpu): models, layers, metrics,
#                optimizers, checkpoints on the device
#   5. bench     benchmarks/bench_gpu.py --kernels: ms/step, host ms, kernels/step
#                against PyTorch, and the ratios
# and prints a compact summary (also in $OUT/summary.txt).
set -u
OUT=${OUT:-gpu_session_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python}
START=$(date +%s)
declare -A STATUS

stage() {        # stage NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    local t0=$(date +%s)
    echo "=== $name (limit ${limit}s): $*" | tee "$OUT/$name.log"
    timeout --signal=INT --kill-after=10 "$limit" "$@" >> "$OUT/$name.log" 2>&1
    local rc=$?
    STATUS[$name]="rc=$rc $(( $(date +%s) - t0 ))s"
    echo "--- $name: ${STATUS[$name]}"
    tail -n 4 "$OUT/$name.log"
}

stage env 30 bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; \
    $PY -c 'import sys, numpy, cupy; print(sys.version.split()[0], \"numpy\", numpy.__version__, \"cupy\", cupy.__version__); import xpnet; print(\"gpus\", xpnet.num_gpus())'; \
    $PY -c 'import torch; print(\"torch\", torch.__version__, torch.cuda.is_available())' || true"

stage compile 60 $PY tools/compile_kernels.py

stage kernels 110 $PY -m pytest -q -p no:cacheprovider -rfE --maxfail=40 \
    tests/test_gpu_kernels.py tests/test_gpu_kernels_compile.py tests/test_gpu_sync.py \
    tests/test_kernel_budgets.py -k "gpu or budget or compile or variants"

stage placement 45 $PY -m pytest -q -p no:cacheprovider -rfE --maxfail=20 -k gpu \
    tests/test_sim_models.py tests/test_basic_layers.py tests/test_metric.py \
    tests/test_trainer.py tests/test_utils.py tests/test_handlers_checkpoint.py

REMAIN=$(( 235 - ($(date +%s) - START) ))
BENCH=$(( REMAIN > 150 ? 120 : (REMAIN > 50 ? REMAIN - 20 : 40) ))
stage bench $BENCH $PY benchmarks/bench_gpu.py --kernels --rounds 5 \
    --budget $(( BENCH - 35 )) --json "$OUT/bench.json"

{
    echo "xpnet GPU session: $(( $(date +%s) - START ))s"
    for s in env compile kernels placement bench; do echo "  $s: ${STATUS[$s]:-not run}"; done
    echo "compile failures:"; grep -E "FAILED" "$OUT/compile.log" | head -20
    echo "test results:"; grep -hE "passed|failed|error" "$OUT/kernels.log" "$OUT/placement.log" \
        | grep -E "^[0-9]+ (passed|failed)|^FAILED|^ERROR" | head -40
    echo "benchmark:"; sed -n '/^model /,$p' "$OUT/bench.log"
} | tee "$OUT/summary.txt"
