#!/usr/bin/env bash
# Print a directory holding libnvrtc.so.13 (CUDA 13.0's NVRTC, from the PyPI wheel
# nvidia-cuda-nvrtc), fetching and unpacking the wheel into .whl/ the first time. Used so that the
# NVRTC compile test of crates/embsolve-cuda runs on machines without CUDA:
#   LD_LIBRARY_PATH=$(scripts/nvrtc_lib.sh) cargo test --release -p embsolve-cuda
# 13.0 matches the driver of the GPU machines (580, CUDA 13.0). Prints nothing and exits 1 when the
# wheel cannot be had (no network); callers then run the tests without NVRTC (they skip).
set -euo pipefail
cd "$(dirname "$0")/.."
version=${NVRTC_VERSION:-13.0.88}
dir=.whl/nvrtc-$version
if [ ! -f "$dir/nvidia/cu13/lib/libnvrtc.so.13" ]; then
  mkdir -p "$dir"
  python=python3
  [ -x .venv/bin/python ] && python=.venv/bin/python
  "$python" -m pip download -q --disable-pip-version-check --no-deps \
    "nvidia-cuda-nvrtc==$version" -d "$dir" >&2 || exit 1
  "$python" - "$dir" <<'PY'
import glob, sys, zipfile
target = sys.argv[1]
for wheel in glob.glob(f"{target}/nvidia_cuda_nvrtc-*.whl"):
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if "/lib/" in name:
                archive.extract(name, target)
PY
fi
echo "$PWD/$dir/nvidia/cu13/lib"
