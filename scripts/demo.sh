#!/usr/bin/env bash
# The README's first command: sets up .venv (CPU PyTorch and every extra) and runs the reference experiment,
# dense vs MoE vs MoE without load balancing, then says where the runs and the figures are.
# Extra arguments go to `expertrack demo` (try --help). Safe to run again: installs are skipped when present.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
"$VPY" -m pip install -q --upgrade pip
# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
"$VPY" -m pip install -q "torch==2.13.0"
"$VPY" -m pip install -q -e ".[all]"

.venv/bin/expertrack demo "$@"
echo
echo "Next: .venv/bin/expertrack ls --project expertrack-demo    (the runs)"
echo "      .venv/bin/expertrack ui                              (the live dashboard at http://127.0.0.1:8080)"
