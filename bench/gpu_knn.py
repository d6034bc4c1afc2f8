#!/usr/bin/env python3
"""GPU kNN benchmark driver: runs the embsolve-cuda `gpu_knn_bench` binary (exact kNN, N = 1,000,000 x
D = 128, k = 16, cosine, rows in 4 ring blocks) in FP32 and TF32 tile precision on this machine's
GPU, and records the raw JSON lines, a CSV and a README in bench/runs/<date>-<machine>/.

Each run checks itself: the GPU lists of sampled queries must equal a CPU brute force
(`identical_to_cpu == checked_queries`), or the driver exits 1. Standard library only, so it runs
on a GPU machine that has nothing but Python 3:

    python3 bench/gpu_knn.py --bin target/gpu-bundle/bench/gpu_knn_bench --machine h100
"""

import argparse
import csv
import datetime
import json
import os
import subprocess
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default="target/release/examples/gpu_knn_bench")
    parser.add_argument("--machine", default="gpu")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--check", type=int, default=256)
    parser.add_argument("--precisions", default="fp32,tf32")
    parser.add_argument("--out", default=None, help="run directory (default bench/runs/DATE-MACHINE)")
    args = parser.parse_args()

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs", f"{date}-{args.machine}")
    os.makedirs(out, exist_ok=True)
    results = []
    for precision in args.precisions.split(","):
        command = [args.bin, "--n", str(args.n), "--dim", str(args.dim), "--k", str(args.k),
                   "--blocks", str(args.blocks), "--check", str(args.check), "--precision", precision]
        print("running", " ".join(command), flush=True)
        done = subprocess.run(command, capture_output=True, text=True)
        sys.stderr.write(done.stderr)
        if done.returncode not in (0, 1) or not done.stdout.strip():
            print(f"gpu_knn_bench failed ({done.returncode})", file=sys.stderr)
            return 1
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(result), flush=True)
        results.append(result)

    with open(os.path.join(out, "gpu_knn.jsonl"), "w") as raw:
        raw.writelines(json.dumps(r) + "\n" for r in results)
    fields = ["n", "dim", "k", "blocks", "precision", "device", "knn_seconds", "gpu_seconds",
              "effective_tflops", "fallback_query_blocks", "checked_queries", "identical_to_cpu"]
    with open(os.path.join(out, "gpu_knn.csv"), "w", newline="") as table:
        writer = csv.DictWriter(table, fieldnames=fields)
        writer.writeheader()
        writer.writerows(results)
    lines = [f"# GPU kNN, {date}, {args.machine}", "",
             f"`python3 bench/gpu_knn.py --bin {args.bin} --machine {args.machine}`: exact kNN of "
             f"N = {args.n} rows, D = {args.dim}, k = {args.k}, cosine, {args.blocks} ring blocks, one GPU. "
             "Time = the whole kNN phase (uploads, SGEMM tiles, top-k kernel, CPU re-rank); "
             "TFLOP/s = 2 N^2 D / time. Agreement: sampled queries whose lists equal a CPU brute force.", "",
             "| precision | device | kNN s | GPU s | TFLOP/s | exact fallbacks | identical / checked |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r['precision']} | {r['device']} | {r['knn_seconds']} | {r['gpu_seconds']} | "
                     f"{r['effective_tflops']} | {r['fallback_query_blocks']} | "
                     f"{r['identical_to_cpu']} / {r['checked_queries']} |")
    with open(os.path.join(out, "README.md"), "w") as readme:
        readme.write("\n".join(lines) + "\n")
    print("recorded in", out)
    return 0 if all(r["identical_to_cpu"] == r["checked_queries"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
