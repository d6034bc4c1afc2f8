"""Stage-1 throughput: the Ray Data pipeline against a plain single-process numpy implementation of
the same embedding, on the same file, in the same run; checks that both give the same rows.

    python bench/stage1_throughput.py --input FASTA --alphabet protein --k 3 --method hash --dim 4096 \
        --out-dir bench/work/stage1 --csv bench/runs/<date>-<machine>/stage1.csv [--label NAME] [--repeat N]

Records with no k-mer are left out by both (`--skip-empty`).
Columns: label, impl (numpy | ray), n_seqs, n_bases, seconds (embed + write; for ray without the
Ray start), ray_start_s, seqs_per_s, bases_per_s, max_abs_diff (ray vs numpy rows).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ray"))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from embsolve_ray.embed import EmbedJob, batch_rows, ensure_ray, run_embed  # noqa: E402
from embsolve_ray.fastx import plan_chunks, read_chunk  # noqa: E402
from embsolve_ray.kmers import embed_tokens, resolve_params, tokenize  # noqa: E402


def numpy_embed(path: str, params, out: Path):
    """Read, tokenize, embed and write one Parquet file, all in this process."""
    started = time.perf_counter()
    ids, matrices, n_bases = [], [], 0
    for chunk in plan_chunks([path], 1 << 40):
        for block in read_chunk(chunk, block_records=batch_rows(params.dim)):
            seqs = block.column("sequence").to_pylist()
            n_bases += sum(len(s) for s in seqs)
            data = np.frombuffer(b"".join(seqs), dtype=np.uint8)
            offsets = np.concatenate(([0], np.cumsum([len(s) for s in seqs]))).astype(np.int64)
            matrix, n_kmers = embed_tokens(tokenize(data, offsets, params.alphabet), params)
            keep = n_kmers > 0  # records with no k-mer are left out, as with --skip-empty
            matrices.append(matrix[keep])
            ids += [name for name, kept in zip(block.column("id").to_pylist(), keep) if kept]
    matrix = np.concatenate(matrices)
    embedding = pa.LargeListArray.from_arrays(
        pa.array(np.arange(0, matrix.size + 1, matrix.shape[1], dtype=np.int64)), pa.array(matrix.ravel()))
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": ids, "embedding": embedding}), out / "part-00000.parquet",
                   compression="zstd", use_dictionary=False, row_group_size=8192)
    return time.perf_counter() - started, matrix, len(ids), n_bases


def ray_matrix(directory: Path) -> np.ndarray:
    import json

    manifest = json.loads((directory / "manifest.json").read_text())
    rows = []
    for entry in manifest["files"]:
        column = pq.read_table(directory / entry["path"], columns=["embedding"]).column("embedding")
        for chunk in column.chunks:
            storage = chunk.storage if isinstance(chunk.type, pa.ExtensionType) else chunk
            rows.append(storage.flatten().to_numpy(zero_copy_only=False).reshape(len(chunk), -1))
    return np.concatenate(rows)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--alphabet", required=True)
    parser.add_argument("--k", type=int, required=True)
    parser.add_argument("--method", default="hash")
    parser.add_argument("--dim", type=int)
    parser.add_argument("--out-dir", type=Path, default=Path("bench/work/stage1"))
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--label", default="")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    params = resolve_params(args.alphabet, args.k, args.method, args.dim)
    started = time.perf_counter()
    ensure_ray()
    ray_start = time.perf_counter() - started
    rows = []
    for repeat in range(args.repeat):
        seconds, reference, n_seqs, n_bases = numpy_embed(args.input, params, args.out_dir / "numpy")
        rows.append(dict(label=args.label, impl="numpy", n_seqs=n_seqs, n_bases=n_bases, seconds=seconds,
                         ray_start_s=0.0, max_abs_diff=0.0))
        job = EmbedJob([args.input], params, args.out_dir / "ray", skip_empty=True)
        started = time.perf_counter()
        run_embed(job)
        seconds = time.perf_counter() - started
        diff = float(np.abs(ray_matrix(args.out_dir / "ray") - reference).max())
        rows.append(dict(label=args.label, impl="ray", n_seqs=n_seqs, n_bases=n_bases, seconds=seconds,
                         ray_start_s=ray_start if repeat == 0 else 0.0, max_abs_diff=diff))
        if diff != 0.0:
            print(f"ray and numpy rows differ by {diff}", file=sys.stderr)
            return 1
    for row in rows:
        row["seqs_per_s"] = row["n_seqs"] / row["seconds"]
        row["bases_per_s"] = row["n_bases"] / row["seconds"]
        print(f"{row['label']:>12} {row['impl']:>5}: {row['n_seqs']} seqs, {row['seconds']:.2f} s, "
              f"{row['seqs_per_s']:.0f} seqs/s, {row['bases_per_s'] / 1e6:.2f} Mbases/s", flush=True)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    new = not args.csv.exists()
    with open(args.csv, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0].keys()))
        if new:
            writer.writeheader()
        writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
