#!/usr/bin/env bash
# Hashes of what khnet computes, to check that a refactoring changes no behaviour (issue 13): a fixed-seed
# 1-epoch proxy run on the shipped sample (weights), `khnet eval --sample 20` (accuracies and losses), `khnet
# search` (winners and their figures) and `khnet sample` (the exported network). Timings are left out. One thread,
# offline. Run it before and after a change and diff the two files:
#
#   scripts/behaviour_hashes.sh /tmp/before.txt ; (change) ; scripts/behaviour_hashes.sh /tmp/after.txt
#   diff /tmp/before.txt /tmp/after.txt && echo identical
#
# RUN=DIR hashes eval, search and sample of an existing run directory instead of training one: to show that a
# change of training only (e.g. its random streams) leaves everything downstream of the weights unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_FILE=${1:?give the file to write the hashes to}
PY=${PYTHON:-.venv/bin/python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=1 KHNET_OFFLINE=1 HF_HUB_OFFLINE=1 KHNET_RESULTS="$WORK/results" PYTHONHASHSEED=0
if [[ -n "${RUN:-}" ]]; then
    cp -r "$RUN" "$WORK/run"
    rm -rf "$WORK/run/eval-summary.json" "$WORK/run"/eval-*.csv "$WORK/run"/eval-*.lock "$WORK/run/results"
else
    $PY -m khnet train --dataset sample --epochs 1 --proxy --seed 0 -o "$WORK/run" > /dev/null 2>&1
fi
$PY -m khnet eval "$WORK/run" --sample 20 --split valid --json 2> /dev/null > "$WORK/eval.json"
$PY -m khnet search -s "$WORK/run" --max-flops 3M --max-flops 6M --max-evals 24 --test-images 256 \
    --calib-images 256 --json 2> /dev/null > "$WORK/search.json"
$PY -m khnet sample 6111 -s "$WORK/run" -o "$WORK/net.safetensors" --calib-images 256 > /dev/null 2>&1
$PY - "$WORK" > "$OUT_FILE" <<'EOF'
import hashlib, json, sys
from pathlib import Path

work = Path(sys.argv[1])
def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]

def strip(value):  # drop timings and machine-local paths, keep every computed number
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in ("seconds", "reused", "latency_ms", "exported")}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value.replace(str(work), "WORK") if isinstance(value, str) else value

print("train model.safetensors", digest((work / "run" / "model.safetensors").read_bytes()))
print("eval --sample 20", digest(json.dumps(strip(json.loads((work / "eval.json").read_text())), sort_keys=True).encode()))
print("search", digest(json.dumps(strip(json.loads((work / "search.json").read_text())), sort_keys=True).encode()))
print("sample net.safetensors", digest((work / "net.safetensors").read_bytes()))
EOF
cat "$OUT_FILE"
