#!/usr/bin/env bash
# Fetch the real sequence data sets from Debian packages into data/ (no system install: each .deb is
# downloaded with `apt-get download` and unpacked with `dpkg -x`). Idempotent: a package already
# unpacked is skipped. Usage: scripts/fetch_data.sh [PACKAGE...]   (default: all of them)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${EMBSOLVE_DATA:-data}
all=(hmmer-examples kaptive-data mmseqs2-examples vsearch-examples)
[ $# -gt 0 ] || set -- "${all[@]}"

# Where each package keeps its sequences; the first path is the marker that it is unpacked.
marker() {
  case "$1" in
    hmmer-examples)   echo usr/share/doc/hmmer/examples/Pkinase.sto ;;
    kaptive-data)     echo usr/share/kaptive/reference_database/Acinetobacter_baumannii_k_locus_primary_reference.gbk ;;
    mmseqs2-examples) echo usr/share/doc/mmseqs2/example-data/DB.fasta.gz ;;
    vsearch-examples) echo usr/share/doc/vsearch/examples/BioMarKs50k.fsa.gz ;;
    *) echo "fetch_data: unknown package $1 (known: ${all[*]})" >&2; return 2 ;;
  esac
}

updated=0
for pkg in "$@"; do
  dest="$data/debian/$pkg"
  want=$(marker "$pkg")
  if [ -n "$(find "$dest" -path "*/${want##*/}" -print -quit 2>/dev/null)" ]; then
    continue
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  if ! (cd "$tmp" && apt-get download -qq "$pkg" >/dev/null 2>&1); then
    if [ "$updated" -eq 0 ]; then
      echo "fetch_data: refreshing the package lists" >&2
      SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
      $SUDO apt-get update -qq
      updated=1
    fi
    (cd "$tmp" && apt-get download -qq "$pkg" >/dev/null)
  fi
  mkdir -p "$dest"
  dpkg -x "$tmp"/"$pkg"_*.deb "$dest"
  rm -rf "$tmp"
  trap - EXIT
  if [ -z "$(find "$dest" -path "*/${want##*/}" -print -quit)" ]; then
    echo "fetch_data: $pkg unpacked but ${want##*/} is not in it" >&2
    exit 1
  fi
  echo "fetch_data: $pkg -> $dest"
done
