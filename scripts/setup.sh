#!/usr/bin/env bash
# Set up privsplat in ./.venv on a fresh Linux machine (CPU by default).
#   bash scripts/setup.sh            # CPU: torch 2.13.0 CPU build
#   TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu128" bash scripts/setup.sh   # CUDA
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: open3d's wheel links against libusb-1.0; text regions and the OCR attacker
# use tesseract (its English data comes with the package; nothing is downloaded at run time).
NEED=""
ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' || NEED="$NEED libusb-1.0-0"
command -v tesseract >/dev/null 2>&1 || NEED="$NEED tesseract-ocr"
if [ -n "$NEED" ]; then
  echo "installing system packages:$NEED"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -q $NEED || { $SUDO apt-get update -q && $SUDO apt-get install -y -q $NEED; }
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Pin torch first: a bare `pip install torch` pulls a multi-GB CUDA build.
# shellcheck disable=SC2086
.venv/bin/python -m pip install -q ${TORCH_SPEC:-torch==2.13.0}
.venv/bin/python -m pip install -q -e ".[test,fr,batch]"
.venv/bin/python -c "import torch, open3d, gsplat; print('privsplat ready: torch', torch.__version__, '| CUDA' if torch.cuda.is_available() else '| CPU')"
