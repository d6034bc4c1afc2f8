#!/usr/bin/env bash
# Build and run the CPU emulation of the topk_tile kernel (see emulate_topk.cpp). Exit 0 = the
# kernel's lists equal the reference for every metric and candidate count.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$here/../src/kernels.rs" "$work/topk.cu.inc" <<'PY'
import re, sys
source = open(sys.argv[1]).read()
kernel = re.search(r'pub const TOPK_SOURCE: &str = r#"(.*?)"#;', source, re.S).group(1)
open(sys.argv[2], "w").write(kernel)
PY
cp "$here/emulate_topk.cpp" "$work/"
g++ -std=c++20 -O1 -pthread -I"$work" -x c++ "$work/emulate_topk.cpp" -o "$work/emulate_topk"
"$work/emulate_topk"
