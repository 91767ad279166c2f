#!/usr/bin/env bash
# The GPU checks in one run, for a machine with a CUDA GPU (one is enough):
#   bash benchmarks/gpu_check.sh [OUT_DIR]        (FAMILIES="seq2seq" PRECISIONS="bf16-mixed" to benchmark less)
# 1. tests/test_gpu.py: cuDNN kernels run and match the CPU, bf16 autocast, decoding on both devices,
#    the pipeline's training on the GPU in bf16 and under DDP (NCCL).
# 2. bench_train.py on the GPU, fp32 and bf16, both families: the project's Lightning training against a
#    bare PyTorch loop on the same model and batches (records appended to benchmarks/results.json).
# Needs the pipeline's data stages (`dvc repro classify_embed seq2seq_embed`) and the project importable
# (`pip install -e .`, or PYTHONPATH=src with its dependencies). Each step has its own time limit and the
# script goes on after a failure, so one broken step still leaves the others' results; it exits non-zero
# if any step failed.
set -u
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-gpu-check}}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python}
failed=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*"
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - start)) s"
    tail -n 25 "$OUT/$name.log"
    [ "$rc" -eq 0 ] || failed=1
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$OUT/gpu.txt" 2>&1
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name(0))" | tee -a "$OUT/gpu.txt"
step test_gpu ${TEST_LIMIT:-210} $PY -m pytest -p no:cacheprovider -q -rA tests/test_gpu.py
for family in ${FAMILIES:-seq2seq classify}; do
    for precision in ${PRECISIONS:-32-true bf16-mixed}; do
        step "bench_${family}_${precision}" ${BENCH_LIMIT:-150} $PY benchmarks/bench_train.py --family "$family" --accelerator gpu \
            --precision "$precision" --repeats 1 --label gpu
    done
done
cp benchmarks/results.json "$OUT/results.json"
exit $failed
