#!/usr/bin/env bash
# The hivemind measurement's heavy part on a GPU machine: train the two LMs of
# specs/gated_attention.exp, then sample them with specs/hivemind.exp's settings into the
# answer cache. Locally, `expc run specs/hivemind.exp` then only embeds and analyses.
# Needs python3 with torch; missing pure-Python packages can come as wheels in .whl/.
#   OUT=/tmp/gpu bash benchmarks/hivemind_device.sh
set -euo pipefail
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu}
mkdir -p "$OUT" runs
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
echo "== train vanilla and gated (specs/gated_attention.exp) on the GPU"
start=$(date +%s)
python3 -m generated.gated_attention.train --device cuda --out runs 2>&1 | grep -v "━"
echo "trained in $(( $(date +%s) - start )) s"
cat runs/gated_attention/*/summary.json
echo "== sample both with every run of specs/hivemind.exp"
python3 benchmarks/hivemind_sample.py --device cuda --out runs
(cd runs/gated_attention && tar cf "$OUT/vanilla.tar" vanilla && tar cf "$OUT/gated.tar" gated)
cp runs/hivemind/cache/samples.sqlite "$OUT/"
ls -la "$OUT"
