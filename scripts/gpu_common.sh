# Sourced by scripts/gpu_check.sh and scripts/gpu_fit_queue.sh on the GPU machine (repo root, $OUT set).
# Wheels for what the machine lacks, from .whl/: gsplat, tyro, plyfile, docstring-parser, typeguard,
# pytorch_msssim (../shared/docs/GPU.md says how to download them).

# Install the wheels, build gsplat's CUDA extension (timed) and run tests/test_render_gpu.py into
# $OUT/gpu_tests.log.
gpu_setup() {
  if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
    export PYTHONPATH=$PWD:/tmp/site
  fi
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=16 TORCH_EXTENSIONS_DIR=/tmp/ext PYTHONUNBUFFERED=1
  local t0=$(date +%s)
  python3 -c "import torch, gsplat; from gsplat.cuda._backend import _C; print('gsplat', gsplat.__version__, 'compiled; torch', torch.__version__, torch.cuda.get_device_name())" 2>&1 | tail -3
  echo "jit build: $(( $(date +%s) - t0 )) s"
  timeout 300 python3 -m pytest -q -s -rs -p no:cacheprovider tests/test_render_gpu.py > "$OUT/gpu_tests.log" 2>&1
  echo "gpu tests rc=$?"; tail -25 "$OUT/gpu_tests.log"
}

# A run folder as it travels back: the checkpoint without the optimiser state, no renders, report or splats
# (config.yaml names the data folder by its absolute path, the same on both machines: the checkout travels
# to the same place).
strip_run() {
  python3 -c "import torch,sys; s=torch.load(sys.argv[1],weights_only=False); torch.save({'model': s['model']}, sys.argv[1])" \
      "$1/checkpoints/latest.pt" 2>/dev/null
  rm -rf "$1/renders" "$1/report.html" "$1/splats.ply"
}
