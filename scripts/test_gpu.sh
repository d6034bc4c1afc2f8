#!/usr/bin/env bash
# `make test-gpu`: build the GPU checks here and pack them with every shared library they need into
# a directory that can be carried to a machine with a GPU (and no Rust, MPI or HDF5) and run there.
#
#   scripts/test_gpu.sh [BUNDLE_DIR]        # default target/gpu-bundle; builds and packs
#   BUNDLE_DIR/run.sh                       # on the GPU machine: runs the checks, exit 0 = passed
#
# When this machine itself can use CUDA the bundle is run right away. The bundle holds:
#   tests/   the embsolve-cuda test binaries (they link nothing but the C library; CUDA is opened
#            at run time). Run with EMBSOLVE_REQUIRE_GPU=1 so that a GPU check that cannot find
#            CUDA fails instead of skipping.
#   bin/     embsolve (stripped), for the CPU-vs-CUDA end-to-end comparison
#   lib/     the .so files embsolve needs (ldd), minus the C library itself
#   openmpi/ Open MPI's plugins and help files, so a singleton run initialises MPI without an
#            Open MPI installation (isolated singleton: no orted)
#   bench/   gpu_knn_bench (the 10^6 x 128 GPU kNN benchmark, links nothing but the C library) and its
#            driver gpu_knn.py: `BUNDLE_DIR/bench/run.sh MACHINE` records a run in BUNDLE_DIR/bench/runs
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=${1:-target/gpu-bundle}
export HDF5_DIR=${HDF5_DIR:-/usr/lib/x86_64-linux-gnu/hdf5/serial}
export MPI_PKG_CONFIG=${MPI_PKG_CONFIG:-ompi-c}

echo "test-gpu: building embsolve and the embsolve-cuda tests"
cargo build --release --locked
cargo build --release --locked -p embsolve-cuda --example gpu_knn_bench
mapfile -t test_bins < <(cargo test --release --locked -p embsolve-cuda --no-run --message-format=json 2>/dev/null |
  python3 -c '
import json, sys
for line in sys.stdin:
    try:
        message = json.loads(line)
    except ValueError:
        continue
    if message.get("reason") == "compiler-artifact" and message.get("executable") and message["profile"]["test"]:
        print(message["executable"])
')
[ ${#test_bins[@]} -gt 0 ] || { echo "test-gpu: no embsolve-cuda test binary was built" >&2; exit 1; }

rm -rf "$bundle"
mkdir -p "$bundle"/{tests,bin,lib,openmpi,bench}

# The C library, the loader and the kernel's vDSO exist on every Linux machine; the rest is carried.
system_lib='^(linux-vdso|ld-linux|libc\.so|libm\.so|libpthread\.so|libdl\.so|librt\.so)'
copy_deps() {
  ldd "$1" 2>/dev/null | awk '/=> \// {print $1, $3}' | while read -r name path; do
    [[ $name =~ $system_lib ]] && continue
    [ -e "$bundle/lib/$name" ] || cp -L "$path" "$bundle/lib/$name"
  done
}

for test_bin in "${test_bins[@]}"; do
  name=$(basename "$test_bin" | sed 's/-[0-9a-f]\{16\}$//')
  strip -o "$bundle/tests/$name" "$test_bin"
  # The CUDA crate must stay carriable: nothing but the C library (and libgcc_s) at link time.
  extra=$(ldd "$test_bin" | awk '{print $1}' | grep -Ev "$system_lib|^libgcc_s\.so|^/" || true)
  if [ -n "$extra" ]; then
    echo "test-gpu: $name links more than the C library: $extra" >&2
    exit 1
  fi
done

strip -o "$bundle/bench/gpu_knn_bench" target/release/examples/gpu_knn_bench
cp bench/gpu_knn.py "$bundle/bench/"
cat > "$bundle/bench/run.sh" <<'BENCH'
#!/usr/bin/env bash
# The GPU kNN benchmark on this machine: bench/run.sh MACHINE_NAME; results in bench/runs/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../env.sh"
python3 "$here/gpu_knn.py" --bin "$here/gpu_knn_bench" --machine "${1:-gpu}" \
  --out "$here/runs/$(date -u +%Y-%m-%d)-${1:-gpu}"
BENCH
chmod +x "$bundle/bench/run.sh"

strip -o "$bundle/bin/embsolve" target/release/embsolve
copy_deps target/release/embsolve
ompi_plugins=/usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3
if [ -d "$ompi_plugins" ]; then
  cp -r "$ompi_plugins" "$bundle/openmpi/plugins"
  [ -d /usr/share/openmpi ] && cp -r /usr/share/openmpi "$bundle/openmpi/share"
  for plugin in "$bundle"/openmpi/plugins/*.so; do copy_deps "$plugin"; done
  pmix_dir=/usr/lib/x86_64-linux-gnu/pmix2/lib/pmix
  if [ -d "$pmix_dir" ]; then
    cp -r "$pmix_dir" "$bundle/openmpi/pmix"
    for plugin in "$bundle"/openmpi/pmix/*.so; do copy_deps "$plugin"; done
  fi
fi

cat > "$bundle/env.sh" <<'ENV'
# Sourced by run.sh and bench/run.sh: the bundle's libraries, the machine's CUDA libraries, Open MPI.
bundle_root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cuda_dirs=""
for dir in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
  if [ -d "$dir" ]; then cuda_dirs="$cuda_dirs:$dir"; fi
done
# CUDA libraries from Python wheels (PyTorch/CuPy environments), when the toolkit has none.
wheel_dirs=$(python3 - 2>/dev/null <<'PY'
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
print(":".join(sorted({os.path.dirname(p) for r in roots for p in glob.glob(f"{r}/nvidia/*/lib/lib*.so*")})))
PY
) || wheel_dirs=""
export LD_LIBRARY_PATH="$bundle_root/lib${cuda_dirs}${wheel_dirs:+:$wheel_dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export EMBSOLVE_REQUIRE_GPU=1
export OPAL_PKGLIBDIR="$bundle_root/openmpi/plugins" OPAL_PKGDATADIR="$bundle_root/openmpi/share"
export PMIX_MCA_mca_base_component_path="$bundle_root/openmpi/pmix"
export OMPI_MCA_ess_singleton_isolated=1 OMPI_MCA_mca_base_component_show_load_errors=0
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ENV

cat > "$bundle/run.sh" <<'RUN'
#!/usr/bin/env bash
# Run the GPU checks of embsolve on this machine (it needs a GPU and the CUDA 13 libraries).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/env.sh"
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
for test_bin in "$here"/tests/*; do
  echo "== $(basename "$test_bin")"
  "$test_bin" --test-threads=1 --nocapture || status=1
done
echo "== embsolve"
if "$here/bin/embsolve" --version; then
  work=$(mktemp -d)
  if "$here/bin/embsolve" generate --kind blobs --n 3000 --dim 48 --clusters 6 --seed 1 \
       --format npy --out "$work/data.npy"; then
    for backend in cpu cuda; do
      printf '[input]\npath = "%s"\n[knn]\nk = 16\nbackend = "%s"\n[output]\ndir = "%s"\n' \
        "$work/data.npy" "$backend" "$work/out-$backend" > "$work/$backend.toml"
      "$here/bin/embsolve" run "$work/$backend.toml" || { echo "embsolve run ($backend) failed"; status=1; }
    done
    if python3 -c 'import h5py' 2>/dev/null; then
      python3 - "$work" <<'PY' || status=1
import sys, h5py, numpy as np
work = sys.argv[1]
cpu, gpu = (h5py.File(f"{work}/out-{b}/results.h5", "r") for b in ("cpu", "cuda"))
same = np.array_equal(cpu["knn/indices"][...], gpu["knn/indices"][...]) and \
       np.array_equal(cpu["knn/distances"][...], gpu["knn/distances"][...])
print("end-to-end kNN lists, CPU vs CUDA:", "identical" if same else "DIFFERENT")
sys.exit(0 if same else 1)
PY
    else
      echo "h5py not available: end-to-end CPU vs CUDA lists not compared"
    fi
  else
    echo "embsolve generate failed: end-to-end comparison not run"
    status=1
  fi
  rm -rf "$work"
else
  echo "embsolve does not start here (missing libraries?)"
  status=1
fi
[ $status -eq 0 ] && echo "GPU checks passed" || echo "GPU checks FAILED"
exit $status
RUN
chmod +x "$bundle/run.sh"
echo "test-gpu: bundle in $bundle ($(du -sh "$bundle" | cut -f1)); on the GPU machine run $bundle/run.sh"

if embsolve_probe=$(python3 -c 'import ctypes; ctypes.CDLL("libcuda.so.1")' 2>&1) && command -v nvidia-smi >/dev/null; then
  "$bundle/run.sh"
else
  echo "test-gpu: no CUDA driver on this machine, so the GPU checks were only built, not run"
  : "${embsolve_probe}"
fi
