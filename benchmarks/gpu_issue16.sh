#!/usr/bin/env bash
# Issue 16's two benchmarks on a lent GPU machine, as one command (about 4 minutes on an H200 is expected;
# not yet run): the Algorithm-1 step against the reference search model, and evaluation one by one against
# stacked (4 and 8 subnets per pass) at proxy and full size. Results come back as JSON in $OUT.
#   OUT=/tmp/out benchmarks/gpu_issue16.sh
set -u
OUT=${OUT:?set OUT to the folder that comes back}
PYTHON=${PYTHON:-python3}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 KHNET_OFFLINE=1 HF_HUB_OFFLINE=1
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/machine.txt" 2>&1 || true
$PYTHON benchmarks/train_vs_reference.py --device cuda --repeats 20 --out "$OUT/train-vs-reference-gpu.json" \
    > "$OUT/train.log" 2>&1
for G in 4 8; do
    $PYTHON benchmarks/eval_throughput.py --device cuda --size proxy --sample 16 --variants after --stacked $G \
        --out "$OUT/eval-proxy-gpu-G$G.json" > "$OUT/eval-proxy-G$G.log" 2>&1
done
$PYTHON benchmarks/eval_throughput.py --device cuda --size full --sample 8 --variants after --stacked 4 \
    --out "$OUT/eval-full-gpu.json" > "$OUT/eval-full.log" 2>&1
tail -n 3 "$OUT"/*.log
