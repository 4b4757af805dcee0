#!/usr/bin/env bash
# Creates .venv if needed and installs the project with the given extras (default: all), CPU PyTorch first.
# Run by scripts/demo.sh and scripts/test.sh. Safe to run again: pip skips what is installed.
set -euo pipefail
extras=${1:-all}
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[$extras]"
