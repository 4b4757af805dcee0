#!/usr/bin/env bash
# The README's first command: sets up .venv (CPU PyTorch and every extra) and runs the reference experiment,
# dense vs MoE vs MoE without load balancing, then says where the runs and the figures are.
# Extra arguments go to `expertrack demo` (try --help). Safe to run again: installs are skipped when present.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-venv.sh all

.venv/bin/expertrack demo "$@"
echo
echo "Next: .venv/bin/expertrack ls --project expertrack-demo    (the runs)"
echo "      .venv/bin/expertrack ui                              (the live dashboard at http://127.0.0.1:8080)"
