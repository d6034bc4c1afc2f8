#!/usr/bin/env bash
# Create (or complete) the Python environment: Ray Data for stage 1, test tools, and with --bench
# the peers the benchmarks compare against. Idempotent.
set -euo pipefail
venv=${1:-.venv}
shift || true
cd "$(dirname "$0")/.."
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pkgs=("ray[data]==2.60.0" "pyarrow==26.0.1" "numpy==2.4.6" "pandas==3.1.1" "h5py==3.16.0" "pytest==9.2.0")
if [ "${1:-}" = "--bench" ]; then
  pkgs+=("scipy==1.17.1" "scikit-learn==1.9.1" "faiss-cpu==1.15.1" "igraph==1.0.0")
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check "${pkgs[@]}"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e ray
