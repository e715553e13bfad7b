#!/usr/bin/env bash
# One GPU session's worth of checks (~8 minutes on one H200), run from the repository root on a machine with CUDA.
# Writes everything under $OUT (default ./output/gpu_check): summary.txt (one line per step: status, seconds),
# and one log per step. Each step has its own time limit; a failing step does not stop the next ones.
#
#   1. wheels from .whl/ (for a machine without internet: yacs and pycocotools for Python 3.12), made beforehand with
#        python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#          --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl yacs pycocotools
#   2. pytest -m cuda: every op on CUDA against the CPU (fp32/fp64, fp16 and bf16 autocast), the model and engine
#      CUDA tests
#   3. the quickstart config on CUDA with AMP (300 iterations, checkpoint at 150), then --resume to 400 iterations,
#      then --eval-only of the final model
#   4. tools/benchmark.py --device cuda --full (det_dcn vs torchvision, DCN / dpool variants vs plain) and
#      tools/benchmark_ops.py --device cuda
#
#   OUT=/some/dir bash tools/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-$REPO/output/gpu_check}
WORK=${GPU_CHECK_WORK:-/tmp/det_dcn_gpu_check}
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 DET_DCN_DATASETS=$WORK/datasets
PY=${PYTHON:-python3}
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"

step() {  # step NAME LIMIT_SECONDS LOG COMMAND...: runs COMMAND with a time limit, records status and seconds
    local name=$1 limit=$2 log=$3
    shift 3
    local start=$SECONDS
    echo "== $name (limit ${limit}s) $(date -u +%T)" | tee -a "$SUMMARY"
    timeout "$limit" "$@" > "$log" 2>&1
    local rc=$?
    local status=ok
    [ $rc -eq 124 ] && status="TIMEOUT"
    [ $rc -ne 0 ] && [ $rc -ne 124 ] && status="FAILED (exit $rc)"
    echo "   $name: $status in $((SECONDS - start)) s; log $(basename "$log")" | tee -a "$SUMMARY"
    tail -n 3 "$log" | sed 's/^/   | /' >> "$SUMMARY"
    return $rc
}

{
    echo "det_dcn $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '(no git)')"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -n 2
    $PY -c "import sys, torch, torchvision; print('python', sys.version.split()[0], 'torch', torch.__version__,
'torchvision', torchvision.__version__, 'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name())"
    $PY -c "import triton; print('triton', triton.__version__)" 2>&1 | tail -n 1
} >> "$SUMMARY" 2>&1

# 1. wheels
if ! $PY -c "import yacs, pycocotools" 2>/dev/null; then
    if ! ls .whl/*.whl > /dev/null 2>&1; then
        echo "missing yacs/pycocotools and no wheels in .whl/ (see this script's header)" | tee -a "$SUMMARY"
        exit 2
    fi
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl \
        >> "$SUMMARY" 2>&1 || { echo "wheel install failed" | tee -a "$SUMMARY"; exit 2; }
    export PYTHONPATH=$WORK/site
fi
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}

# 2. CUDA tests (layers, model, engine)
step "pytest -m cuda" 170 "$OUT/pytest_cuda.log" $PY -m pytest -q -m cuda -rs -p no:cacheprovider tests

# 3. short AMP training of the quickstart on CUDA, resume, evaluation
QS="--config-file configs/quickstart/faster_rcnn_shapes.yaml MODEL.DEVICE cuda SOLVER.AMP.ENABLED True"
TRAIN_DIR=$WORK/quickstart_amp
rm -rf "$TRAIN_DIR"
step "train 300 iterations (AMP)" 120 "$OUT/train.log" $PY tools/train.py $QS OUTPUT_DIR "$TRAIN_DIR" \
    SOLVER.MAX_ITER 300 SOLVER.WARMUP_ITERS 50 SOLVER.STEPS "(250,)" SOLVER.CHECKPOINT_PERIOD 150
step "resume to 400 iterations" 90 "$OUT/resume.log" $PY tools/train.py $QS --resume OUTPUT_DIR "$TRAIN_DIR" \
    SOLVER.MAX_ITER 400 SOLVER.WARMUP_ITERS 50 SOLVER.STEPS "(250,)" SOLVER.CHECKPOINT_PERIOD 150
step "eval-only" 60 "$OUT/eval.log" $PY tools/train.py $QS --eval-only OUTPUT_DIR "$WORK/quickstart_eval" \
    MODEL.WEIGHTS "$TRAIN_DIR/model_final.pth"
cp "$TRAIN_DIR/metrics.json" "$OUT/metrics.json" 2>/dev/null

# 4. speed (ratios measured in one run; see each tool's header)
step "benchmark.py --device cuda --full" 150 "$OUT/benchmark.log" $PY tools/benchmark.py --device cuda --full --iters 10
step "benchmark_ops.py --device cuda" 60 "$OUT/benchmark_ops.log" $PY tools/benchmark_ops.py --device cuda

echo "done in $SECONDS s" | tee -a "$SUMMARY"
grep -q -E "FAILED|TIMEOUT" "$SUMMARY" && exit 1
exit 0
