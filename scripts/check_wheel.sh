#!/usr/bin/env bash
# Build khnet's wheel, install it (with its dependencies, nothing from the source tree) into a fresh venv, and
# run what a new user runs, offline, from an empty folder: zoo list, search on the default entry, sample.
#
#   scripts/check_wheel.sh [VENV_DIR]        (default /tmp/khnet-wheel-venv; recreated each time)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-/tmp/khnet-wheel-venv}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 -m venv "$WORK/build-env"
"$WORK/build-env/bin/pip" install -q "setuptools>=77" wheel 2>&1 | grep -v "^WARNING: Location" || true
"$WORK/build-env/bin/pip" wheel -q --no-deps --no-build-isolation -w "$WORK/dist" . 2>&1 | grep -v "^WARNING: Location" || true
rm -rf build
WHEEL=$(ls "$WORK"/dist/khnet-*.whl)
echo "wheel: $WHEEL ($(du -h "$WHEEL" | cut -f1))"
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "$WHEEL" 2>&1 | grep -v "^WARNING: Location" || true
mkdir -p "$WORK/user"
cd "$WORK/user"  # nothing of the source tree on sys.path
export KHNET_OFFLINE=1 HF_HUB_OFFLINE=1 KHNET_DATA="$WORK/user/no-data" KHNET_RESULTS="$WORK/user/results"
"$VENV/bin/python" -c "import khnet, sys; assert 'site-packages' in khnet.__file__, khnet.__file__; print('khnet from', khnet.__file__)"
"$VENV/bin/khnet" zoo list
start=$(date +%s.%N)
"$VENV/bin/khnet" search --max-flops 4M --top 3
end=$(date +%s.%N)
echo "search wall time: $(echo "$end - $start" | bc) s"
"$VENV/bin/khnet" search --budget-net benchmark --max-flops 50M --top 3
"$VENV/bin/khnet" sample 6111 -o net.pt
"$VENV/bin/python" -c "import torch; m = torch.export.load('net.pt').module(); print('net.pt logits', tuple(m(torch.randn(2, 3, 32, 32)).shape))"
echo "wheel check passed"
