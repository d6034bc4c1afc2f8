"""Read throughput and memory of the row-block readers, per format.

Generates one blobs dataset per format (Parquet f32 and f16, HDF5, npy) with `embsolve generate`,
then runs `embsolve inspect PATH --check K`: the whole dataset is read in K row blocks, exactly as
K ranks would read it (each block opens only the shards / row groups / hyperslab overlapping it,
and every row is checked), one block after the other in one process. The peak RSS therefore
follows one block, and the time is the total read time of all blocks. Correctness: the column
means printed by the reader are compared with numpy's over the same files.

Usage: python bench/read_throughput.py --rows 1000000 --dim 128 --out bench/runs/DATE-MACHINE
"""

import argparse
import csv
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("EMBSOLVE_BIN", ROOT / "target" / "release" / "embsolve"))


def peak_rss_of(args):
    """Wall time, CPU time (user + sys) and peak RSS (bytes) of one run, measured with GNU time."""
    start = time.monotonic()
    done = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", *map(str, args)], capture_output=True,
                          text=True)
    wall = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed:\n{done.stderr}")
    rss_kb, user, system = done.stderr.strip().splitlines()[-1].split()
    return done.stdout, wall, float(user) + float(system), int(rss_kb) * 1024


def numpy_mean(fmt, path):
    manifest = json.loads((path / "manifest.json").read_text())
    files = [path / f["path"] for f in manifest["files"]]
    total = None
    n = 0
    for f in files:
        if fmt.startswith("parquet"):
            column = pq.read_table(f, columns=["embedding"]).column("embedding").combine_chunks()
            values = column.values.to_numpy(zero_copy_only=False).reshape(len(column), -1)
        elif fmt == "hdf5":
            import h5py
            with h5py.File(f) as h:
                values = h["embedding"][:]
        else:
            values = np.load(f, mmap_mode="r")
        part = values.astype(np.float64).sum(axis=0)
        total = part if total is None else total + part
        n += values.shape[0]
    return total / n


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--shards", type=int, default=7)
    parser.add_argument("--blocks", default="1,2,4")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    blocks = [int(b) for b in args.blocks.split(",")]
    formats = [("parquet-f32", "parquet", "f32"), ("parquet-f16", "parquet", "f16"),
               ("hdf5", "hdf5", "f32"), ("npy", "npy", "f32")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, fmt, dtype in formats:
            data = Path(tmp) / name
            subprocess.run([BIN, "generate", "--kind", "blobs", "--n", str(args.rows), "--dim", str(args.dim),
                            "--clusters", "20", "--format", fmt, "--shards", str(args.shards),
                            "--dtype", dtype, "--out", data], check=True, capture_output=True)
            disk = sum(f.stat().st_size for f in data.rglob("*") if f.is_file())
            reference = numpy_mean(name, data)
            for k in blocks:
                stdout, wall, cpu, rss = peak_rss_of([BIN, "inspect", data, "--check", k, "--json"])
                report = json.loads(stdout)
                error = float(np.max(np.abs(np.array(report["check"]["mean"]) - reference)))
                in_memory = args.rows * args.dim * 4
                rows.append({
                    "format": name, "rows": args.rows, "dim": args.dim, "shards": args.shards, "blocks": k,
                    "disk_bytes": disk, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                    "f32_gb_per_cpu_s": round(in_memory / max(cpu, 1e-9) / 1e9, 3),
                    "rows_per_s": round(args.rows / wall), "f32_gb_per_s": round(in_memory / wall / 1e9, 3),
                    "peak_rss_mb": round(rss / 2**20, 1), "block_mb": round(in_memory / k / 2**20, 1),
                    "max_abs_mean_error": error,
                })
                print(json.dumps(rows[-1]), flush=True)
                assert error < 1e-5, f"{name}: mean differs from numpy by {error}"
    with open(args.out / "read_throughput.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
