#!/usr/bin/env bash
# Install the Debian packages embsolve needs, only those missing; quiet when there is nothing to do.
set -euo pipefail
packages=(libopenmpi-dev openmpi-bin libhdf5-dev libhdf5-openmpi-dev hdf5-tools clang libclang-dev pkg-config
          slurm-wlm munge lmod fonts-dejavu-core chromium python3-venv)
packages+=("$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
