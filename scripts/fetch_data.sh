#!/usr/bin/env bash
# Fetch the real sequence data sets from Debian packages into data/ (no system install: each .deb is
# downloaded with `apt-get download` and unpacked with `dpkg -x` under data/debian/PACKAGE), then
# derive the labelled protein sets (FASTA + labels TSV, see ray/embsolve_ray/datasets.py):
#   data/pfam8/         8 Pfam seed families of hmmer-examples, 321 proteins, label column `family`
#   data/kaptive_ab/    A. baumannii K-locus proteins (kaptive-data), label column `gene`
#   data/kaptive_ab20/  the same, genes with at least 20 proteins only
# Throughput sets are used as they are: data/debian/mmseqs2-examples/.../DB.fasta.gz (20,000 UniProt
# proteins), data/debian/vsearch-examples/.../BioMarKs50k.fsa.gz (50,000 18S amplicons).
# Idempotent: a package already unpacked and a set already derived are skipped.
# Usage: scripts/fetch_data.sh [PACKAGE...]   (default: all of them)
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
    vsearch-examples) echo usr/share/doc/vsearch-examples/BioMarKs50k.fsa.gz ;;
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

# Labelled protein sets (standard-library Python, no environment needed).
derive() {
  local out=$1
  shift
  [ -s "$out/labels.tsv" ] && return 0
  PYTHONPATH=ray${PYTHONPATH:+:$PYTHONPATH} python3 -m embsolve_ray.datasets "$@" "$out"
}
for pkg in "$@"; do
  case "$pkg" in
    hmmer-examples)
      derive "$data/pfam8" pfam "$data/debian/hmmer-examples/usr/share/doc/hmmer/examples" ;;
    kaptive-data)
      gbk="$data/debian/kaptive-data/usr/share/kaptive/reference_database/Acinetobacter_baumannii_k_locus_primary_reference.gbk"
      derive "$data/kaptive_ab" kaptive "$gbk"
      derive "$data/kaptive_ab20" kaptive --min-family 20 "$gbk" ;;
  esac
done
