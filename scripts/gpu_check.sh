#!/usr/bin/env bash
# GPU checks, run on a CUDA machine from the repo root (used on the lent H100/H200; see
# ../shared/docs/GPU.md): gsplat parity tests, the render benchmark, and fit timings on
# protected datasets prepared beforehand on a CPU machine (synth/protect need open3d/dlib):
#   .gpu/head64-protected, .gpu/head256-protected, .gpu/head512-protected   (scripts/gpu_prepare.sh)
# The GPU machine has no open3d: run folders come back as $OUT/run<res>.tgz (model only); unpack them on the
# CPU machine, then `privsplat mesh --run RUN` and `privsplat eval --mesh RUN/mesh.ply --gt ... --gt-face-mask ...`.
# Wheels for what the machine lacks are installed from .whl/ (gsplat, tyro, plyfile, docstring-parser, typeguard,
# pytorch_msssim). Results go to $OUT (or ./gpu-out).
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=$PWD:/tmp/site
fi
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=16 TORCH_EXTENSIONS_DIR=/tmp/ext PYTHONUNBUFFERED=1
t0=$(date +%s)
python3 -c "import torch, gsplat; from gsplat.cuda._backend import _C; print('gsplat', gsplat.__version__, 'compiled; torch', torch.__version__, torch.cuda.get_device_name())" 2>&1 | tail -3
echo "jit build: $(( $(date +%s) - t0 )) s"
python3 -m pytest -q -s -rs tests/test_render_gpu.py > "$OUT/gpu_tests.log" 2>&1; echo "gpu tests rc=$?"; tail -25 "$OUT/gpu_tests.log"
[ "${BENCH:-1}" = 1 ] && python3 -m privsplat render-bench --backends all --cases 20000x64 100000x512 300000x512 --json-out "$OUT/render_bench.json" > /dev/null 2>&1; echo "render-bench rc=$?"
for res in ${FIT_RES:-64 256 512}; do
  [ -d ".gpu/head${res}-protected" ] || continue
  preset=head${res}  # head64, head256, head512
  args=FIT_ARGS_$res; timeout ${FIT_TIMEOUT:-200} python3 -m privsplat fit --data ".gpu/head${res}-protected" --out "/tmp/run${res}" --preset $preset ${!args:-} \
      --no-mesh --no-progress ${FIT_ARGS:-} > "$OUT/fit${res}.log" 2>&1; echo "fit $res rc=$?"; tail -3 "$OUT/fit${res}.log"
  cp "/tmp/run${res}/metrics.json" "$OUT/fit${res}_metrics.json" 2>/dev/null
  # the run folder without the optimiser state, renders and report (config.yaml names the data folder by its
  # absolute path, the same here as on the GPU machine: the checkout travels to the same place)
  python3 -c "import torch,sys; s=torch.load(sys.argv[1],weights_only=False); torch.save({'model': s['model']}, sys.argv[1])" \
      "/tmp/run${res}/checkpoints/latest.pt" 2>/dev/null
  tar -C /tmp -czf "$OUT/run${res}.tgz" --exclude=renders --exclude=report.html --exclude=splats.ply "run${res}" 2>/dev/null
done
echo "total: $(( $(date +%s) - t0 )) s"
