#!/usr/bin/env bash
# GPU smoke of the newer backends' generated code and the CRL throughput benchmark, in one go.
# Needs only python3 with torch + numpy + rich (generated/ is committed).
#   OUT=/tmp/gpu bash benchmarks/gpu_backends.sh
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu}
mkdir -p "$OUT"
nvidia-smi -L
echo "== CRL critic step at depth 64: achieved vs peak fp32 matmul GFLOP/s on the GPU"
python3 benchmarks/crl_flops.py --device cuda --threads 0 --configs 256x512,1024x4096 2>&1 | tee "$OUT/crl_flops.txt"
for spec in crl_depth diffusion_memorization rlvr_passk; do
  echo "== $spec --smoke --device cuda"
  timeout 120 python3 -m "generated.$spec.train" --smoke --device cuda --out /tmp/gpu_runs 2>&1 \
    | grep -v "━" | tail -n 4 | tee "$OUT/${spec}_smoke.txt"
done
