#!/usr/bin/env bash
# Strong and weak scaling studies of embsolve on Slurm: submit the runs, gather every run.json
# into CSV files and draw time per phase, speed-up and efficiency as PNG plots.
#
#   slurm/scaling.sh --out DIR [options]          submit, wait, collect, plot
#   slurm/scaling.sh --collect DIR                collect and plot the runs already in DIR/runs
#
# Options:
#   --ranks "1 2 4"          rank counts of both series (default "1 2 4")
#   --series both            strong | weak | both
#   --strong-n N             rows of the strong-scaling problem (fixed for every rank count; 20000)
#   --weak-n-per-rank N      rows per rank of the weak-scaling series (N x ranks rows; 5000)
#   --dim D --clusters C     shape of the generated blobs (64, 16)
#   --input PATH             run the strong series on this dataset instead of generated blobs
#   --config FILE            base config (default: a kNN-heavy one written to DIR/scaling.toml)
#   --set section.key=value  extra override for every run (repeatable)
#   --cpus-per-task C        threads per rank (1)
#   --sbatch-arg ARG         extra sbatch option for every job (repeatable), e.g. --sbatch-arg=-pcpu
#   --concurrent             let the jobs run at the same time (default: one after the other,
#                            through --dependency=singleton, so runs do not disturb each other)
#   --timeout S              give up waiting after S seconds (default 86400)
#
# Output in DIR: data/ (generated inputs), runs/<series>-p<P>/ (each run's output.dir),
# logs/, scaling_strong.csv, scaling_weak.csv, scaling_phases.png, scaling_speedup.png,
# scaling_efficiency.png. Speed-up and efficiency are relative to the smallest rank count P0:
# strong speed-up S(P) = T(P0) / T(P), efficiency S(P) * P0 / P; weak efficiency T(P0) / T(P).
# T is the sum over phases of the slowest rank's time (run.json phases.*.max_s).
# The binary: $EMBSOLVE_BIN, else `embsolve` on PATH, else target/release/embsolve of this checkout.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "scaling.sh: $*" >&2; exit 2; }

ranks="1 2 4"
series=both
strong_n=20000
weak_n=5000
dim=64
clusters=16
input=""
config=""
cpus=1
concurrent=0
timeout=86400
out=""
collect_only=0
sets=()
sbatch_extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift ;;
    --collect) out=$2; collect_only=1; shift ;;
    --ranks) ranks=$2; shift ;;
    --series) series=$2; shift ;;
    --strong-n) strong_n=$2; shift ;;
    --weak-n-per-rank) weak_n=$2; shift ;;
    --dim) dim=$2; shift ;;
    --clusters) clusters=$2; shift ;;
    --input) input=$2; shift ;;
    --config) config=$2; shift ;;
    --set) sets+=(--set "$2"); shift ;;
    --set=*) sets+=(--set "${1#--set=}") ;;
    --cpus-per-task) cpus=$2; shift ;;
    --sbatch-arg) sbatch_extra+=("$2"); shift ;;
    --sbatch-arg=*) sbatch_extra+=("${1#--sbatch-arg=}") ;;
    --concurrent) concurrent=1 ;;
    --timeout) timeout=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
[ -n "$out" ] || die "--out DIR is required"
case "$series" in strong | weak | both) ;; *) die "--series must be strong, weak or both" ;; esac
for p in $ranks; do [[ $p =~ ^[1-9][0-9]*$ ]] || die "--ranks: '$p' is not a rank count"; done
mkdir -p "$out"
out=$(cd "$out" && pwd)

find_tool() { # $1 = binary name next to embsolve
  local bin_dir
  if [ -n "${EMBSOLVE_BIN:-}" ]; then
    bin_dir=$(dirname "$EMBSOLVE_BIN")
  elif command -v embsolve >/dev/null; then
    bin_dir=$(dirname "$(command -v embsolve)")
  else
    bin_dir=$script_dir/../target/release
  fi
  [ -x "$bin_dir/$1" ] || die "$bin_dir/$1 not found (cargo build --release, or module load embsolve)"
  echo "$bin_dir/$1"
}
bin=${EMBSOLVE_BIN:-$(find_tool embsolve)}
plotter=$(find_tool embsolve-plot-scaling)

collect() {
  python3 - "$out" <<'PY'
import csv, json, os, sys

out = sys.argv[1]
phases = ["read", "preprocess", "knn", "graph", "components", "pagerank", "spectral", "fft", "write"]
runs = {}
for name in sorted(os.listdir(os.path.join(out, "runs"))):
    series, _, p = name.rpartition("-p")
    path = os.path.join(out, "runs", name, "run.json")
    if series not in ("strong", "weak") or not p.isdigit():
        continue
    if not os.path.exists(path):
        print(f"scaling.sh: {path} missing (the run failed or did not finish)", file=sys.stderr)
        continue
    with open(path) as f:
        runs.setdefault(series, []).append(json.load(f) | {"_dir": os.path.join("runs", name)})
if not runs:
    sys.exit("scaling.sh: no run.json under " + os.path.join(out, "runs"))
for series, items in runs.items():
    items.sort(key=lambda r: r["n_ranks"])
    base = items[0]
    def total(r):
        return sum(r["phases"].get(p, {}).get("max_s", 0.0) for p in phases)
    header = ["series", "n_ranks", "threads_per_rank", "n_rows", "dim", "backend", "total_s"]
    header += [f"{p}_s" for p in phases] + ["speedup", "efficiency", "peak_rss_max_bytes", "run_dir"]
    path = os.path.join(out, f"scaling_{series}.csv")
    with open(path + ".tmp", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for r in items:
            ratio = total(base) / total(r)
            if series == "strong":
                speedup, efficiency = ratio, ratio * base["n_ranks"] / r["n_ranks"]
            else:  # scaled speed-up: the work grows with the ranks
                speedup, efficiency = ratio * r["n_ranks"] / base["n_ranks"], ratio
            writer.writerow([series, r["n_ranks"], r["threads_per_rank"], r["n_rows"], r["dim"], r["backend"],
                             f"{total(r):.6f}"]
                            + [f"{r['phases'].get(p, {}).get('max_s', 0.0):.6f}" for p in phases]
                            + [f"{speedup:.4f}", f"{efficiency:.4f}", r.get("peak_rss_bytes", {}).get("max", 0),
                               r["_dir"]])
    os.replace(path + ".tmp", path)
    print(f"scaling.sh: {path}: " + ", ".join(
        f"P={r['n_ranks']} {total(r):.3f} s" for r in items))
PY
  "$plotter" "$out"
}

if [ $collect_only -eq 1 ]; then
  collect
  exit 0
fi

command -v sbatch >/dev/null || die "sbatch not found (module load slurm, or eval \"\$(slurm/local/cluster.sh env)\")"
sbatch_script=$script_dir/embsolve.sbatch
[ -f "$sbatch_script" ] || die "$sbatch_script not found"
max_p=1
for p in $ranks; do [ "$p" -gt "$max_p" ] && max_p=$p; done

if [ -z "$config" ]; then
  config=$out/scaling.toml
  cat >"$config" <<'EOF'
# kNN-heavy scaling job written by slurm/scaling.sh; input.path and output.dir are set per run.
[input]
path = "set-per-run"
[output]
dir = "set-per-run"
write_knn = true
checkpoint = false
[knn]
k = 16
[spectral]
n_eigs = 8
EOF
fi
config=$(cd "$(dirname "$config")" && pwd)/$(basename "$config")

generate() { # rows path; a marker beside the dataset says it was written completely
  local marker=$(dirname "$2")/.$(basename "$2").d$dim-c$clusters-s$max_p.ok
  [ -f "$marker" ] && return 0
  echo "scaling.sh: generating $1 x $dim blobs in $2"
  rm -rf "$2"
  "$bin" generate --kind blobs --n "$1" --dim "$dim" --clusters "$clusters" --seed 11 \
    --format parquet --shards "$max_p" --out "$2" >/dev/null
  touch "$marker"
}

mkdir -p "$out/data" "$out/runs" "$out/logs"
job_ids=()
submit() { # series ranks rows input
  local name=$1-p$2 run_dir=$out/runs/$1-p$2 args
  rm -rf "$run_dir"
  args=(--parsable --job-name="embsolve-scaling" -n "$2" -c "$cpus" --output="$out/logs/$name-%j.out"
        --chdir="$out")
  [ $concurrent -eq 1 ] || args+=(--dependency=singleton)
  job=$(sbatch "${args[@]}" "${sbatch_extra[@]}" "$sbatch_script" "$config" "${sets[@]}" \
    --set "input.path=$4" --set "output.dir=$run_dir")
  job=${job%%;*}
  echo "scaling.sh: $name ($3 rows) is job $job"
  job_ids+=("$job")
}

if [ "$series" != weak ]; then
  strong_input=$input
  if [ -z "$strong_input" ]; then
    strong_input=$out/data/strong-n$strong_n
    generate "$strong_n" "$strong_input"
  fi
  for p in $ranks; do submit strong "$p" "$strong_n" "$strong_input"; done
fi
if [ "$series" != strong ]; then
  for p in $ranks; do
    rows=$((weak_n * p))
    generate "$rows" "$out/data/weak-n$rows"
    submit weak "$p" "$rows" "$out/data/weak-n$rows"
  done
fi

# Poll squeue ourselves (sbatch --wait polls slowly).
ids=$(IFS=,; echo "${job_ids[*]}")
deadline=$((SECONDS + timeout))
while [ -n "$(squeue -h -j "$ids" -o %i 2>/dev/null)" ]; do
  [ $SECONDS -lt $deadline ] || die "jobs $ids still queued or running after $timeout s"
  sleep 0.5
done
failed=0
for id in "${job_ids[@]}"; do
  state=$(scontrol show job "$id" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -n1)
  if [ -n "$state" ] && [ "$state" != COMPLETED ]; then
    echo "scaling.sh: job $id ended $state; see $out/logs" >&2
    failed=1
  fi
done
collect
[ $failed -eq 0 ] || exit 1
