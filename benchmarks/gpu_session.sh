#!/usr/bin/env bash
# Everything this project checks on a GPU, in one go (a lent GPU machine's time is short).
# Needs only python3 with torch + triton + numpy + rich (no compiler: generated/ is committed).
#   OUT=/tmp/gpu bash benchmarks/gpu_session.sh
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu}
RUNS=${RUNS:-/tmp/gpu_runs}
mkdir -p "$OUT" "$RUNS"
nvidia-smi -L
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
echo "== kernel vs eager on the GPU"
python3 benchmarks/gpu_kernel_check.py 2>&1 | tee "$OUT/kernel_check.txt"
echo "== kernel timing"
python3 benchmarks/gate_kernel_gpu.py 2>&1 | tee "$OUT/gate_kernel.txt"
echo "== the cuda spec end to end: bf16 + torch.compile + Triton gate, both variants"
timeout "${TRAIN_TIMEOUT:-330}" python3 -m generated.gated_attention_cuda.train --out "$RUNS" \
  2>&1 | grep -v "━" | tail -n 30 | tee "$OUT/train.txt"
for run in vanilla gated; do
  cp "$RUNS/gated_attention_cuda/$run/metrics.jsonl" "$OUT/${run}_metrics.jsonl" 2>/dev/null
done
