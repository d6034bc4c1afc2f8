#!/usr/bin/env bash
# Install embsolve under PREFIX: the binaries, the Slurm scripts and docs, and an Lmod modulefile.
#   scripts/install.sh PREFIX VERSION     (what `make install PREFIX=DIR [VERSION=V]` runs)
# Layout:
#   PREFIX/bin/embsolve, PREFIX/bin/embsolve-plot-scaling
#   PREFIX/share/embsolve/slurm/{embsolve.sbatch,sweep.sbatch,scaling.sh,local/cluster.sh}
#   PREFIX/share/doc/embsolve/cluster.md
#   PREFIX/modulefiles/embsolve/VERSION.lua   (module use PREFIX/modulefiles; module load embsolve)
# The modulefile
# - loads the MPI, HDF5 and CUDA modules that were loaded when this ran (the ones the binary was
#   built against, e.g. LOADEDMODULES=openmpi/4.1.5:hdf5/1.10.8), else the site's default
#   openmpi/hdf5/cuda modules where they exist, and nothing where there are none;
# - adds to LD_LIBRARY_PATH the directories of the shared libraries the binary links (libmpi,
#   libhdf5, ...) that the system's loader does not search by itself.
# EMBSOLVE_BIN overrides the binary to install (default target/release/embsolve).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 PREFIX VERSION" >&2; exit 2; }
version=$2
[[ $version =~ ^[A-Za-z0-9._+-]+$ ]] || { echo "install.sh: bad VERSION '$version'" >&2; exit 2; }
cd "$(dirname "$0")/.."
bin=${EMBSOLVE_BIN:-target/release/embsolve}
[ -x "$bin" ] || { echo "install.sh: $bin not built (make build)" >&2; exit 1; }
plotter=$(dirname "$bin")/embsolve-plot-scaling
[ -x "$plotter" ] || { echo "install.sh: $plotter not built (make build)" >&2; exit 1; }
mkdir -p "$1"
prefix=$(cd "$1" && pwd)

install -D -m 755 "$bin" "$prefix/bin/embsolve"
install -m 755 "$plotter" "$prefix/bin/embsolve-plot-scaling"
scripts=$prefix/share/embsolve/slurm
install -d "$scripts/local"
install -m 755 slurm/embsolve.sbatch slurm/sweep.sbatch slurm/scaling.sh "$scripts/"
install -m 755 slurm/local/cluster.sh "$scripts/local/"
install -D -m 644 docs/cluster.md "$prefix/share/doc/embsolve/cluster.md"

# Library directories the loader searches by itself (ldconfig's list plus the built-in ones), each
# also with symlinks resolved (/lib -> /usr/lib on merged-/usr systems).
system_dirs=$(
  { ldconfig -v -N 2>/dev/null | sed -n 's/^\(\/[^:]*\):.*/\1/p' || true
    printf '%s\n' /lib /usr/lib /lib64 /usr/lib64; } |
    while read -r d; do echo "$d"; [ -d "$d" ] && (cd "$d" && pwd -P); done | sort -u
)
library_dirs=()
missing=()
while read -r name arrow path _; do
  [ "$arrow" = "=>" ] || continue
  if [ "$path" = not ]; then
    missing+=("$name")
    continue
  fi
  dir=$(cd "$(dirname "$path")" && pwd -P)
  if ! grep -qxF "$dir" <<<"$system_dirs" && [[ " ${library_dirs[*]} " != *" $dir "* ]]; then
    library_dirs+=("$dir")
  fi
done < <(ldd "$prefix/bin/embsolve")
if [ ${#missing[@]} -gt 0 ]; then
  echo "install.sh: warning: the binary's libraries ${missing[*]} are not found here; the modulefile" \
    "loads the site's MPI/HDF5 modules, which must provide them" >&2
fi

# Site modules the binary was built against, when any are loaded now.
pinned=()
IFS=: read -r -a loaded <<<"${LOADEDMODULES:-}"
for module in "${loaded[@]}"; do
  case "${module,,}" in
    openmpi* | mpi/* | hdf5* | cuda*) pinned+=("$module") ;;
  esac
done

modulefile=$prefix/modulefiles/embsolve/$version.lua
install -d "$(dirname "$modulefile")"
python3 - modules/embsolve.lua.in "$modulefile.tmp" "$version" "$prefix" \
  "${library_dirs[*]:-}" "${pinned[*]:-}" <<'PY'
import sys

template, out, version, prefix, library_dirs, pinned = sys.argv[1:7]

def lua(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

if pinned.split():
    groups = "\n".join(f"  {{ {lua(m)} }}," for m in pinned.split())
else:
    groups = '  { "openmpi", "OpenMPI", "mpi/openmpi" },\n  { "hdf5", "HDF5" },\n  { "cuda", "CUDA" },'
paths = "\n".join(f'prepend_path("LD_LIBRARY_PATH", {lua(d)})' for d in library_dirs.split())
text = open(template).read()
text = (text.replace("@VERSION@", version).replace('"@PREFIX@"', lua(prefix)).replace("@PREFIX@", prefix)
        .replace("@SITE_MODULES@", groups)
        .replace("@LIBRARY_PATHS@", paths or "-- (the binary's libraries are in the system's default paths)"))
open(out, "w").write(text)
PY
mv "$modulefile.tmp" "$modulefile"
echo "installed embsolve $version in $prefix"
echo "  module use $prefix/modulefiles && module load embsolve/$version"
