#!/usr/bin/env bash
# GPU checks, run on a CUDA machine from the repo root (used on the lent H100/H200; see
# ../shared/docs/GPU.md): gsplat parity tests, the render benchmark, and fit timings on
# protected datasets prepared beforehand on a CPU machine (synth/protect need open3d/dlib):
#   .gpu/head64-protected, .gpu/head256-protected, .gpu/head512-protected   (scripts/gpu_prepare.sh)
# The GPU machine has no open3d: run folders come back as $OUT/run<res>.tgz (model only); unpack them on the
# CPU machine, then `privsplat mesh --run RUN` and `privsplat eval --mesh RUN/mesh.ply --gt ... --gt-face-mask ...`.
# Wheels for what the machine lacks are installed from .whl/ (scripts/gpu_common.sh). Results go to $OUT (or ./gpu-out).
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
. "$(dirname "$0")/gpu_common.sh"
t0=$(date +%s)
gpu_setup || exit 1
[ "${BENCH:-1}" = 1 ] && python3 -m privsplat render-bench --backends all --cases 20000x64 100000x512 300000x512 --json-out "$OUT/render_bench.json" > /dev/null 2>&1; echo "render-bench rc=$?"
for res in ${FIT_RES:-64 256 512}; do
  [ -d ".gpu/head${res}-protected" ] || continue
  preset=head${res}  # head64, head256, head512
  args=FIT_ARGS_$res; timeout ${FIT_TIMEOUT:-200} python3 -m privsplat fit --data ".gpu/head${res}-protected" --out "/tmp/run${res}" --preset $preset ${!args:-} \
      --no-mesh --no-progress ${FIT_ARGS:-} > "$OUT/fit${res}.log" 2>&1; echo "fit $res rc=$?"; tail -3 "$OUT/fit${res}.log"
  cp "/tmp/run${res}/metrics.json" "$OUT/fit${res}_metrics.json" 2>/dev/null
  strip_run "/tmp/run${res}"
  tar -C /tmp -czf "$OUT/run${res}.tgz" "run${res}" 2>/dev/null
done
echo "total: $(( $(date +%s) - t0 )) s"
