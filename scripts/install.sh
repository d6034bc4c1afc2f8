#!/usr/bin/env bash
# Install embsolve under PREFIX: the binary, the Slurm scripts and docs, and an Lmod modulefile.
#   scripts/install.sh PREFIX VERSION     (what `make install PREFIX=DIR` runs)
# Layout:
#   PREFIX/bin/embsolve
#   PREFIX/share/embsolve/slurm/{embsolve.sbatch,sweep.sbatch,scaling.sh,scaling_plot.py,local/cluster.sh}
#   PREFIX/share/doc/embsolve/cluster.md
#   PREFIX/modulefiles/embsolve/VERSION.lua   (module use PREFIX/modulefiles; module load embsolve)
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 PREFIX VERSION" >&2; exit 2; }
version=$2
[ -n "$version" ] || { echo "install.sh: empty VERSION" >&2; exit 2; }
cd "$(dirname "$0")/.."
mkdir -p "$1"
prefix=$(cd "$1" && pwd)
bin=${EMBSOLVE_BIN:-target/release/embsolve}
[ -x "$bin" ] || { echo "install.sh: $bin not built (make build)" >&2; exit 1; }

install -D -m 755 "$bin" "$prefix/bin/embsolve"
scripts=$prefix/share/embsolve/slurm
install -d "$scripts/local"
install -m 755 slurm/embsolve.sbatch slurm/sweep.sbatch slurm/scaling.sh "$scripts/"
install -m 644 slurm/scaling_plot.py "$scripts/"
install -m 755 slurm/local/cluster.sh "$scripts/local/"
install -D -m 644 docs/cluster.md "$prefix/share/doc/embsolve/cluster.md"

# Lua string escaping of the prefix: backslashes and double quotes.
lua_prefix=$(printf '%s' "$prefix" | sed 's/\\/\\\\/g; s/"/\\"/g')
modulefile=$prefix/modulefiles/embsolve/$version.lua
install -d "$(dirname "$modulefile")"
sed -e "s|@VERSION@|$version|g" -e "s|@PREFIX@|${lua_prefix//|/\\|}|g" modules/embsolve.lua.in >"$modulefile.tmp"
mv "$modulefile.tmp" "$modulefile"
echo "installed embsolve $version in $prefix"
echo "  module use $prefix/modulefiles && module load embsolve/$version"
