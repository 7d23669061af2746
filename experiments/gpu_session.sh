#!/usr/bin/env bash
# Issue 11 on a lent GPU machine, as one command (docs/results.md, "GPU runs"):
#   1. experiments/gpu_check.py at the paper's size (C=16, N=5) on the whole JPEG CIFAR-10: a throughput
#      probe alone on the GPU, then weight sharing and the default form trained for equal steps, 50 archs
#      evaluated at half and full budget;
#   2. once the probe is done, beside it, the proxy study's protocol (experiments/proxy_study.py, float32) for
#      the runs named in RUNS, all at once (each is a small, launch-bound process).
# Needs gpu_data/cifar10-jpeg/cifar10-jpeg.tar.gz (carried; a copy of ../shared/data/cifar10-jpeg) and the
# machine's own python3 with torch; its own typer works (typer 0.29 carried as a wheel did not: it needs pydantic).
# Measured on an H200 (2026-11-28): data 9 s; probe 30 s; gpu_check with TRAIN_BUDGET_S=120 about 270 s more;
# ten proxy runs side by side 316-368 s of training each, then about 50 s of evaluation each: give the whole
# command 600 s, or fewer RUNS. Trained proxy supernets are not packed (too large for $OUT): evaluate in the call. Everything it measures is packed into $OUT/results.tgz every 20 s, so a
# run cut short still returns what it finished.
#
#   OUT=/tmp/out RUNS="ws khn-res" TRAIN_BUDGET_S=150 experiments/gpu_session.sh
#   SMOKE=1 OUT=/tmp/out RUNS="ws" experiments/gpu_session.sh        # on the CPU: a few steps of everything
set -u
OUT=${OUT:?set OUT to the folder that comes back}
RUNS=${RUNS:-"ws ws-s1 khn-res-g0-shared khn-res-g0-shared-s1"}  # weight sharing and the default form
TRAIN_BUDGET_S=${TRAIN_BUDGET_S:-150}
PYTHON=${PYTHON:-python3}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 KHNET_OFFLINE=1 HF_HUB_OFFLINE=1
mkdir -p "$OUT" logs

if [ -n "${SMOKE:-}" ]; then
    CHECK_ARGS=(--smoke --runs /tmp/khnet-smoke/gpu_check --out logs/gpu_check-smoke.csv)
    STUDY_ARGS=(--smoke --runs-dir /tmp/khnet-smoke/proxy --out logs/proxy-smoke)
    DEVICE=cpu
else
    CHECK_ARGS=(--train-budget-s "$TRAIN_BUDGET_S" --workers 4)
    STUDY_ARGS=(--runs-dir runs/proxy-gpu --out experiments/results/proxy-gpu)
    DEVICE=cuda
fi

pack() {
    tar czf "$OUT/results.tgz.tmp" experiments/results logs runs/gpu_check/*/metrics.csv \
        runs/proxy-gpu/*/metrics.csv runs/proxy-gpu/*/config.json 2>/dev/null
    mv "$OUT/results.tgz.tmp" "$OUT/results.tgz"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  $PYTHON -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; nproc; } \
    > logs/machine.txt 2>&1
$PYTHON -m khnet train --help > /dev/null 2>> logs/machine.txt && echo "khnet CLI ok" >> logs/machine.txt
cat logs/machine.txt
started=$(date +%s)
$PYTHON experiments/proxy_data.py --shared gpu_data > logs/data.log 2>&1 || { cat logs/data.log; exit 1; }
echo "data ready after $(( $(date +%s) - started )) s"

( while sleep 20; do pack; done ) &
packer=$!

rm -f logs/ready
if [ -n "${SKIP_CHECK:-}" ]; then  # the proxy runs alone
    true & check=$!; touch logs/ready; touch logs/gpu_check.log
else
    $PYTHON experiments/gpu_check.py "${CHECK_ARGS[@]}" --ready-file logs/ready > logs/gpu_check.log 2>&1 &
    check=$!
fi
for _ in $(seq 300); do [ -f logs/ready ] || ! kill -0 $check 2>/dev/null && break; sleep 1; done
echo "probe done after $(( $(date +%s) - started )) s"; grep -E "^probe|^steps" logs/gpu_check.log

pids=()
for name in $RUNS; do
    ( export OMP_NUM_THREADS=1 NVIDIA_TF32_OVERRIDE=0  # float32 as on the CPU: no TF32 in convs or matmuls
      $PYTHON experiments/proxy_study.py --device $DEVICE "${STUDY_ARGS[@]}" train "$name" \
      && $PYTHON experiments/proxy_study.py --device $DEVICE "${STUDY_ARGS[@]}" eval "$name" ) \
        > "logs/proxy-$name.log" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || echo "a proxy run failed (pid $pid)"; done
echo "proxy runs done after $(( $(date +%s) - started )) s"
wait $check || echo "gpu_check failed"
echo "gpu_check done after $(( $(date +%s) - started )) s"
kill $packer 2>/dev/null
pack
tail -n 5 logs/gpu_check.log
for name in $RUNS; do echo "== $name"; tail -n 2 "logs/proxy-$name.log"; done
