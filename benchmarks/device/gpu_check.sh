#!/usr/bin/env bash
# The resident merger's GPU check, in one call on a lent GPU machine (prepare.sh first, here):
#   1. the bitwise tests of tests/test_resident.py with both sides on cuda (resident against run_merge and
#      mergekit-yaml --device cuda, DARE and DELLA under the same seed), and tests/test_run.py's whole runs, whose
#      mergers' `auto` device is then the GPU (scoring, records, kill -9 and resume, best --write-model);
#   2. benchmarks/merge_speed.py --device cuda: resident against run_merge on cuda plus a reload onto the GPU,
#      10M/100M/500M, four methods, and each against the GPU's copy-bandwidth floor;
#   3. benchmarks/scoring.py --device cuda: the native scorer before and after issue 29, on the demo's items and on a
#      100M-parameter Llama (lm-eval is not on that machine, so its HFLM column stays empty there).
# Everything it prints also lands in $OUT (gpu_check.log, merge_speed.json). About 6-9 minutes on an H100.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1

PY=${PY:-python3}
CHECK_DEVICE=${CHECK_DEVICE:-cuda}   # cpu rehearses the script on a machine without a GPU
SIZES=${SIZES:-10M,100M,500M}
if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; fi
# without these nothing below can run: stop at once rather than spend device time on import errors
"$PY" -m pip install --quiet --no-index --no-deps .device/wheels/*.whl || exit 1
"$PY" -m pip install --quiet --no-index --no-deps --no-build-isolation -e . || exit 1
"$PY" -c 'import torch, transformers, mergekit_evo; print("torch", torch.__version__, "transformers", transformers.__version__, "cuda", torch.cuda.is_available())'

export MERGEKIT_EVO_CACHE=$PWD/.device/cache HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
status=0
echo "== 1. bitwise: resident on $CHECK_DEVICE against mergekit on $CHECK_DEVICE; whole runs (their mergers' auto device)"
MERGEKIT_EVO_TEST_DEVICE=$CHECK_DEVICE timeout 300 "$PY" -m pytest -q -p no:cacheprovider \
  tests/test_resident.py tests/test_run.py || status=1
echo "== 2. merge speed on $CHECK_DEVICE"
timeout 420 "$PY" benchmarks/merge_speed.py --device "$CHECK_DEVICE" --sizes "$SIZES" --repeats 3 \
  --json "$OUT/merge_speed.json" || status=1
echo "== 3. scoring on $CHECK_DEVICE"
timeout 240 "$PY" benchmarks/scoring.py --device "$CHECK_DEVICE" --synthetic-repeats 3 || status=1
exit $status
