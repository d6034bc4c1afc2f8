#!/usr/bin/env bash
# ParallelCluster OnNodeConfigured action: install embsolve and its Lmod module.
#   on-node-configured.sh REPO_URL GIT_REF PREFIX
# On the head node: installs the build dependencies and Lmod, builds embsolve from REPO_URL at
# GIT_REF and runs `make install PREFIX=PREFIX/embsolve` (PREFIX is on the shared FSx file system),
# then makes PREFIX/embsolve/modulefiles visible to every login shell. On compute nodes: installs the
# runtime libraries (OpenMPI, HDF5) and Lmod, and waits until the head node's install is there.
# Logs go to /var/log/parallelcluster/ (cfn-init output) and PREFIX/embsolve-install.log.
set -euo pipefail
repo=${1:?repository URL}
ref=${2:?git ref}
prefix=${3:?install prefix}
root=$prefix/embsolve
export DEBIAN_FRONTEND=noninteractive

. /etc/parallelcluster/cfnconfig
node_type=${cfn_node_type:-HeadNode}

apt-get update -qq
apt-get install -y -qq --no-install-recommends lmod openmpi-bin libopenmpi3 libhdf5-103-1 \
  libhdf5-openmpi-103-1 fonts-dejavu-core >/dev/null

# Every login shell: Lmod and the embsolve modules.
cat >/etc/profile.d/z-embsolve-modules.sh <<PROFILE
[ -f /usr/share/lmod/lmod/init/bash ] && . /usr/share/lmod/lmod/init/bash
[ -d $root/modulefiles ] && module use $root/modulefiles
PROFILE

if [ "$node_type" = HeadNode ]; then
  exec >>"$prefix/embsolve-install.log" 2>&1
  apt-get install -y -qq --no-install-recommends git build-essential curl clang libclang-dev \
    pkg-config libopenmpi-dev libhdf5-dev libhdf5-openmpi-dev hdf5-tools >/dev/null
  if ! command -v cargo >/dev/null; then
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  fi
  export PATH=$HOME/.cargo/bin:$PATH
  src=$prefix/src/embsolve
  if [ -d "$src/.git" ]; then
    git -C "$src" fetch --tags origin
  else
    git clone "$repo" "$src"
  fi
  git -C "$src" checkout --detach "$ref"
  version=$(git -C "$src" describe --tags --always)
  make -C "$src" install PREFIX="$root" VERSION="${version#v}"
  # The default version for a plain `module load embsolve`.
  ln -sfn "${version#v}.lua" "$root/modulefiles/embsolve/default"
else
  # Compute nodes use the head node's install on FSx.
  for _ in $(seq 360); do
    [ -d "$root/modulefiles/embsolve" ] && break
    sleep 10
  done
fi
