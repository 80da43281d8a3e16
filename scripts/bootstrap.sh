#!/usr/bin/env bash
# Create the project's virtual environment in $VENV (default .venv) and install st4r_ros into it.
# A CUDA machine keeps the torch it already has (the venv sees the system site-packages and
# gsplat is added); anywhere else torch comes in as the CPU build, so pip never pulls the
# CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
stamp="$VENV/.st4r-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt setup.py ]; then
  exit 0
fi

if "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "st4r: CUDA torch found: keeping it and adding gsplat"
  "$PYTHON" -m venv --system-site-packages "$VENV"
  extras="cuda,test"
else
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q "torch==2.13.0+cpu"
  extras="test"
fi
"$VENV/bin/python" -m pip install -q -e ".[$extras]"
touch "$stamp"
