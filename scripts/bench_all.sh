#!/usr/bin/env bash
# `make bench`: every peer comparison on this machine, recorded under bench/runs/<date>-<machine>/.
#   EMBSOLVE_BENCH_MACHINE  name of the machine in the run directory (default: the host name)
#   EMBSOLVE_BENCH_ONLY     a space-separated subset of: knn ann graph spectral fft read proteins
# Each driver runs embsolve and its peers on the same file in the same run and writes raw CSV/JSON;
# the README of the run directory says what ran.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
py=.venv/bin/python
machine=${EMBSOLVE_BENCH_MACHINE:-$(hostname -s)}
out=bench/runs/$(date -u +%F)-$machine
mkdir -p "$out"
only=${EMBSOLVE_BENCH_ONLY:-knn ann graph spectral fft read proteins}
# Peers only the benchmarks use (not the tests): HNSW and the plots of the ANN benchmark.
"$py" -c "import hnswlib, matplotlib" 2>/dev/null ||
  "$py" -m pip install -q --disable-pip-version-check "hnswlib==0.8.0" "matplotlib==3.11.2"
{
  echo "# $(date -u +%F) on $machine"
  echo
  echo "Commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); $(nproc) cores;"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg). Drivers: $only."
} >"$out/RUN.md"
for what in $only; do
  echo "== bench: $what -> $out"
  case $what in
    knn)      "$py" bench/knn_bench.py --out "$out" --tag "$(date -u +%H%M)" ;;
    ann)      "$py" bench/ann_bench.py --out "$out" --dataset blobs200k --dataset uniprot20k --dataset gauss100k ;;
    graph)    "$py" bench/graph_bench.py --out "$out" ;;
    spectral) "$py" bench/spectral_bench.py --out "$out" --pipeline ;;
    fft)      "$py" bench/fft_bench.py --out "$out" ;;
    read)     "$py" bench/read_throughput.py --rows 200000 --out "$out" ;;
    proteins) "$py" bench/proteins_bench.py --out "$out" ;;
    *) echo "bench_all: unknown driver $what" >&2; exit 2 ;;
  esac
done
echo "bench: results in $out"
