#!/usr/bin/env bash
# Build a wheel of privsplat, install it into a fresh venv OUTSIDE the checkout, and run it from
# another directory: `privsplat fit --help`, `privsplat synth`, protect and a tiny fit. Proves the
# package needs no checkout (presets and assets travel inside the wheel).
#   bash scripts/check_wheel.sh          (uses ./.venv's python to build; CPU torch pin as setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WORK=$(mktemp -d /tmp/privsplat-wheel.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
.venv/bin/python -m pip wheel -q --no-deps --no-build-isolation -w "$WORK/dist" "$REPO"
rm -rf "$REPO/build"
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --upgrade pip
# shellcheck disable=SC2086
"$WORK/venv/bin/python" -m pip install -q ${TORCH_SPEC:-torch==2.13.0}
"$WORK/venv/bin/python" -m pip install -q "$WORK"/dist/privsplat-*.whl
cd "$WORK"
export OMP_NUM_THREADS=1
P="$WORK/venv/bin/privsplat"
"$WORK/venv/bin/python" -c "import privsplat, sys; assert '$REPO' not in privsplat.__file__, privsplat.__file__; print('privsplat from', privsplat.__file__)"
"$P" fit --help > /dev/null
"$P" fit --preset head512 --help | grep -q "default: 5000"
"$P" synth --out "$WORK/head" --views 12 --resolution 32
"$P" protect --data "$WORK/head" --out "$WORK/prot" --sensitive all --resolution 32 > /dev/null
"$P" fit --data "$WORK/prot" --out "$WORK/run" --preset head64 --n-init 300 --stage1-iters 0 \
  --stage2-iters 30 --stage2-settle-iters 0 --template always --mesh-orbit-views 4 --threads 1 --no-progress
test -s "$WORK/run/mesh.ply" && test -s "$WORK/run/metrics.json"
echo "wheel check passed: installed outside the checkout, synth + protect + fit ran from $WORK"
