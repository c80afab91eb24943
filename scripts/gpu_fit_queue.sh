#!/usr/bin/env bash
# Many fits in one call on the lent GPU (../shared/docs/GPU.md): gsplat's JIT build and tests/test_render_gpu.py,
# then the fits listed in .gpu/queue, PAR at a time, all bounded by one deadline (BUDGET s after the start) so
# what finished comes back even when the queue does not. One line per fit:
#     GROUP RUN_NAME DATA_FOLDER_UNDER_.gpu/data PRESET SEED
# Runs come back model-only (no optimiser state, renders, report), one $OUT/GROUP.tgz per group (at most 8 files
# come back from a call: use at most 6 groups). The GPU machine has no open3d: mesh and score them on the CPU
# (`privsplat mesh --run RUN`, scripts/bench_quality.py's score()); config.yaml names the data folder by the
# absolute path it had there (the checkout's path, the same as here).
# Wheels in .whl/ for what the machine lacks: scripts/gpu_common.sh.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
T0=$(date +%s); DEADLINE=$(( T0 + ${BUDGET:-540} ))
. scripts/gpu_common.sh
gpu_setup || exit 1
mkdir -p /tmp/R
export DEADLINE
fit_one() {  # group name data preset seed
  local rem=$(( DEADLINE - $(date +%s) )); [ $rem -gt 30 ] || { echo "skip $2"; return 0; }
  local run=/tmp/R/$1/runs/$2 t=$(date +%s); mkdir -p /tmp/R/$1/runs
  timeout $rem python3 -m privsplat fit --data ".gpu/data/$3" --out "$run" --preset $4 --seed $5 --threads 1 \
      --no-mesh --no-progress --overwrite ${FIT_EXTRA:-} > /tmp/R/$1/$2.log 2>&1
  local rc=$?; echo "$1 $2 rc=$rc $(( $(date +%s) - t )) s"
  [ $rc = 0 ] || { tail -5 /tmp/R/$1/$2.log; return 0; }
  strip_run "$run"
}
export -f fit_one strip_run
xargs -P ${PAR:-12} -L 1 bash -c 'fit_one "$@"' _ < .gpu/queue 2>&1 | tee "$OUT/fits.log"
echo "fits done at $(( $(date +%s) - T0 )) s"
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
shopt -s nullglob; cd /tmp/R && for g in */; do tar -czf "$OUT/${g%/}.tgz" "${g%/}"; done; ls -la "$OUT"
echo "total: $(( $(date +%s) - T0 )) s"
