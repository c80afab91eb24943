#!/usr/bin/env bash
# Prepare protected datasets for scripts/gpu_check.sh on a CPU machine with the venv:
# ICT identity 1, 36 views, the 15 rear views neutral, at 64, 256 and 512 px, in .gpu/.
set -euo pipefail
cd "$(dirname "$0")/.."
for res in ${FIT_RES:-64 256 512}; do
  .venv/bin/python - "$res" <<'PY'
import sys
from pathlib import Path
from privsplat.data.synth import synthesize
from privsplat.data.synth import rear_view_names
from privsplat.privacy.protect import protect
res = int(sys.argv[1])
data, prot = Path(f".gpu/head{res}"), Path(f".gpu/head{res}-protected")
synthesize(mesh="ict", out=data, resolution=res, identity_seed=1, overwrite=True)
_, sensitive = rear_view_names(data, 15)
protect(data, prot, sensitive=",".join(sensitive), overwrite=True, verbose=False)
PY
done
