#!/usr/bin/env bash
# Create (or complete) the Python environment: Ray Data for stage 1, the test tools, and the peers
# the tests and benchmarks compare against (scipy, scikit-learn, faiss-cpu, igraph, leidenalg, networkit; pyrodigal ships the
# C. diphtheriae genome of bench/fft_bench.py and predicts its genes). Idempotent:
# a stamp of the pinned list skips pip when nothing changed.
set -euo pipefail
venv=${1:-.venv}
shift || true
cd "$(dirname "$0")/.."
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pkgs=("ray[data]==2.60.0" "pyarrow==26.0.1" "numpy==2.4.6" "pandas==3.1.1" "h5py==3.16.0" "pytest==9.2.0"
      "scipy==1.17.1" "scikit-learn==1.9.1" "faiss-cpu==1.15.1" "igraph==1.0.0" "leidenalg==0.12.0" "networkit==11.3" "pyrodigal==3.7.1")
stamp="$venv/.pins"
if [ "$(cat "$stamp" 2>/dev/null)" != "${pkgs[*]}" ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${pkgs[@]}"
  echo "${pkgs[*]}" > "$stamp"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e ray
