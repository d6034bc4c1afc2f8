"""Approximate kNN graphs: embsolve's partitioned kNN (`knn.method = "partitioned"`) against faiss
IVF-Flat and hnswlib HNSW on the same rows in the same run, 2 threads each, k = 16, cosine.

Every tool builds the whole kNN graph (every row is a query, self excluded); its time is the whole
of it (embsolve: the kNN phase of run.json, max over ranks, which includes training the cells and
the exact certificate; faiss: train + add + search; hnswlib: build + search). Recall@k is measured
here, on a seeded sample of 2,000 rows searched exactly by brute force (float32 GEMM, float64
re-ranking of the top candidates), the same rows for every tool. embsolve's own estimate (from its
own, different certificate sample) is recorded beside it with its 95% interval.

Datasets (--dataset, repeatable):
  blobs200k   `embsolve generate --kind blobs --n 200000 --dim 128 --clusters 1000 --noise 4 --seed 3`
  blobs1m     the same generator with --n 1000000 (exact kNN is out of reach here; the sample is not)
  uniprot20k  20,000 UniProt proteins (Debian mmseqs2-examples), stage 1: protein 3-mers hashed to
              4096 dims (Ray Data)
  gauss100k   100,000 x 128 isotropic Gaussian rows, no clusters (the hard case for any partition)

    python bench/ann_bench.py --out bench/runs/DATE-MACHINE [--dataset blobs200k ...] [--no-hnsw]

Writes ann_<dataset>.csv, ann_<dataset>.json and ann_<dataset>.png (recall against time) in --out.
Needs faiss-cpu (in the venv); hnswlib and matplotlib are installed by `make bench`.
"""

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("EMBSOLVE_BIN", ROOT / "target" / "release" / "embsolve"))
PY = sys.executable
K = 16
THREADS = 2
SAMPLE = 2000
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "EMBSOLVE_NO_PROGRESS": "1",
    "RAY_AUTH_MODE": "disabled",
    "OMP_NUM_THREADS": str(THREADS),
}


def env():
    merged = dict(os.environ)
    merged.update(MPI_ENV)
    return merged


def load_npy_dataset(path):
    manifest = json.loads((path / "manifest.json").read_text())
    return np.concatenate([np.load(path / f["path"]) for f in manifest["files"]]).astype(np.float32)


def load_parquet_dataset(path):
    import pyarrow.parquet as pq
    manifest = json.loads((path / "manifest.json").read_text())
    column = manifest.get("column", "embedding")
    tables = [pq.read_table(path / f["path"], columns=[column]) for f in manifest["files"]]
    return np.concatenate([np.stack(t.column(column).to_numpy(zero_copy_only=False))
                           for t in tables]).astype(np.float32)


def make_dataset(name, work):
    """(embsolve input path, format, float32 rows as read) for a dataset name."""
    if name in ("blobs200k", "blobs1m"):
        n = 200_000 if name == "blobs200k" else 1_000_000
        out = work / name
        if not (out / "manifest.json").exists():
            subprocess.run([str(BIN), "generate", "--kind", "blobs", "--n", str(n), "--dim", "128",
                            "--clusters", "1000", "--noise", "4", "--seed", "3", "--format", "npy",
                            "--out", str(out)], check=True, capture_output=True, env=env())
        return out, "npy", load_npy_dataset(out)
    if name == "gauss100k":
        out = work / "gauss100k.npy"
        if not out.exists():
            x = np.random.default_rng(7).standard_normal((100_000, 128)).astype(np.float32)
            np.save(out, x)
        return out, "npy", np.load(out)
    if name == "uniprot20k":
        subprocess.run([str(ROOT / "scripts" / "fetch_data.sh"), "mmseqs2-examples"], check=True,
                       env=env(), capture_output=True)
        fasta = ROOT / "data" / "debian" / "mmseqs2-examples" / "usr/share/doc/mmseqs2/example-data/DB.fasta.gz"
        out = work / "uniprot20k"
        if not (out / "manifest.json").exists():
            subprocess.run([PY, "-m", "embsolve_ray", "embed", "--input", str(fasta), "--alphabet", "protein",
                            "--k", "3", "--method", "hash", "--dim", "4096", "--out", str(out)],
                           check=True, env=env(), cwd=ROOT)
        return out, "parquet", load_parquet_dataset(out)
    raise SystemExit(f"ann_bench: unknown dataset {name}")


def normalise(x):
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1
    return (x / norms).astype(np.float32)


def truth(x, queries):
    """Exact top-k (self excluded) of the query rows: float32 GEMM for candidates, float64 re-rank."""
    out = np.empty((len(queries), K), dtype=np.int64)
    for start in range(0, len(queries), 250):
        q = queries[start:start + 250]
        sims = x[q] @ x.T
        sims[np.arange(len(q)), q] = -np.inf
        cand = np.argpartition(-sims, K + 32, axis=1)[:, :K + 32]
        for i, row in enumerate(q):
            c = cand[i]
            exact = x[c].astype(np.float64) @ x[row].astype(np.float64)
            exact[c == row] = -np.inf
            order = np.lexsort((c, -exact))
            out[start + i] = c[order[:K]]
    return out


def recall(found, exact):
    return float(np.mean([len(np.intersect1d(a, b)) / K for a, b in zip(found, exact)]))


def run_embsolve(work, tag, data, fmt, knn):
    import h5py
    out = work / f"out_{tag}"
    lines = ["[run]", f"threads = {THREADS}", "[input]", f'path = "{data}"', f'format = "{fmt}"',
             "[knn]", f"k = {K}", 'metric = "cosine"', 'backend = "cpu"']
    lines += [f"{key} = {json.dumps(value)}" for key, value in knn.items()]
    for section in ("components", "pagerank", "leiden", "spectral"):
        lines += [f"[{section}]", "enabled = false"]
    lines += ["[output]", f'dir = "{out}"', "checkpoint = false"]
    config = work / f"{tag}.toml"
    config.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    done = subprocess.run(["mpirun", "-n", "1", "--bind-to", "none", str(BIN), "run", str(config)],
                          capture_output=True, text=True, env=env())
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"embsolve {tag} failed:\n{done.stderr}")
    summary = json.loads((out / "run.json").read_text())
    with h5py.File(out / "results.h5") as f:
        indices = f["/knn/indices"][...]
    return summary, indices, wall


def peer_main(args):
    """One peer in its own process (so its peak memory is its own): writes a JSON list of rows."""
    x = np.load(args.peer_data, mmap_mode=None)
    queries = np.load(args.peer_queries)
    exact = np.load(args.peer_truth)
    rows = []
    if args.peer == "faiss":
        import faiss
        faiss.omp_set_num_threads(THREADS)
        t0 = time.perf_counter()
        quantizer = faiss.IndexFlatIP(x.shape[1])
        index = faiss.IndexIVFFlat(quantizer, x.shape[1], args.nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(x)
        index.add(x)
        build = time.perf_counter() - t0
        for nprobe in args.nprobe:
            index.nprobe = nprobe
            t1 = time.perf_counter()
            _, found = index.search(x, K + 1)
            search = time.perf_counter() - t1
            found = drop_self(found, queries)
            rows.append({"tool": "faiss IVF-Flat", "setting": f"IVF{args.nlist},Flat nprobe {nprobe}",
                         "build_s": build, "search_s": search, "seconds": build + search,
                         "recall": recall(found, exact)})
    elif args.peer == "hnswlib":
        import hnswlib
        t0 = time.perf_counter()
        index = hnswlib.Index(space="ip", dim=x.shape[1])
        index.init_index(max_elements=len(x), M=16, ef_construction=100, random_seed=1)
        index.set_num_threads(THREADS)
        index.add_items(x, np.arange(len(x)))
        build = time.perf_counter() - t0
        for ef in args.ef:
            index.set_ef(max(ef, K + 1))
            t1 = time.perf_counter()
            found, _ = index.knn_query(x, k=K + 1)
            search = time.perf_counter() - t1
            found = drop_self(found.astype(np.int64), queries)
            rows.append({"tool": "hnswlib HNSW", "setting": f"M16 efC100 ef {ef}",
                         "build_s": build, "search_s": search, "seconds": build + search,
                         "recall": recall(found, exact)})
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for row in rows:
        row["peak_rss_bytes"] = rss
    Path(args.peer_out).write_text(json.dumps(rows))


def drop_self(found, queries):
    """The k neighbours of each query row from k + 1 results (self removed, else the last)."""
    out = np.empty((len(queries), K), dtype=np.int64)
    for i, row in enumerate(queries):
        r = [v for v in found[row] if v != row and v >= 0][:K]
        out[i, :len(r)] = r
        out[i, len(r):] = -1
    return out


def run_peer(work, peer, x_path, q_path, t_path, args):
    out = work / f"peer_{peer}.json"
    cmd = [PY, __file__, "--peer", peer, "--peer-data", str(x_path), "--peer-queries", str(q_path),
           "--peer-truth", str(t_path), "--peer-out", str(out), "--nlist", str(args.nlist),
           "--nprobe", *map(str, args.nprobe), "--ef", *map(str, args.ef), "--out", str(work)]
    subprocess.run(cmd, check=True, env=env())
    return json.loads(out.read_text())


def plot(rows, path, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("ann_bench: matplotlib missing, no PNG", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for tool, marker in (("embsolve partitioned", "o"), ("faiss IVF-Flat", "s"), ("hnswlib HNSW", "^"),
                         ("embsolve exact", "*")):
        mine = sorted((r for r in rows if r["tool"] == tool), key=lambda r: r["seconds"])
        if mine:
            ax.plot([r["seconds"] for r in mine], [r["recall"] for r in mine], marker=marker, label=tool)
    ax.set_xscale("log")
    ax.set_xlabel("seconds for the whole kNN graph (2 threads)")
    ax.set_ylabel(f"recall@{K} (measured on {SAMPLE} rows)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def bench_dataset(name, args, out_dir):
    with tempfile.TemporaryDirectory(prefix=f"ann_{name}_", dir=args.work) as tmp:
        work = Path(tmp)
        data, fmt, raw = make_dataset(name, Path(args.work))
        x = normalise(raw)
        del raw
        n, dim = x.shape
        queries = np.sort(np.random.default_rng(12345).choice(n, size=min(SAMPLE, n), replace=False))
        t0 = time.perf_counter()
        exact = truth(x, queries)
        print(f"[{name}] {n} x {dim}: exact sample lists in {time.perf_counter() - t0:.1f} s", flush=True)
        x_path, q_path, t_path = work / "x.npy", work / "q.npy", work / "t.npy"
        np.save(x_path, x)
        np.save(q_path, queries)
        np.save(t_path, exact)
        del x
        rows = []
        settings = [("recall 0.95", {"method": "partitioned", "recall": 0.95}),
                    ("recall 0.99", {"method": "partitioned", "recall": 0.99})]
        settings += [(f"probes {p}", {"method": "partitioned", "probes": p}) for p in args.probes]
        if args.exact and n <= 200_000:
            settings.append(("exact", {"method": "exact"}))
        for label, knn in settings:
            summary, indices, wall = run_embsolve(work, label.replace(" ", "_").replace(".", ""), data, fmt, knn)
            result = summary["results"]["knn"]
            interval = result.get("recall_interval", [None, None])
            row = {"tool": "embsolve exact" if knn["method"] == "exact" else "embsolve partitioned",
                   "setting": label if knn["method"] == "exact" else
                   f"{label} (partitions {result.get('partitions')}, probes {result.get('probes')})",
                   "seconds": summary["phases"]["knn"]["max_s"], "wall_s": wall,
                   "recall": recall(indices[queries], exact),
                   "recall_estimate": result.get("recall_estimate"),
                   "estimate_low": interval[0], "estimate_high": interval[1],
                   "peak_rss_bytes": summary["peak_rss_bytes"]["max"]}
            rows.append(row)
            print(f"[{name}] embsolve {row['setting']}: {row['seconds']:.2f} s, recall {row['recall']:.4f}"
                  f" (estimate {row['recall_estimate']})", flush=True)
        peers = ["faiss"] + ([] if args.no_hnsw else ["hnswlib"])
        for peer in peers:
            for row in run_peer(work, peer, x_path, q_path, t_path, args):
                rows.append(row)
                print(f"[{name}] {row['tool']} {row['setting']}: {row['seconds']:.2f} s, recall {row['recall']:.4f}",
                      flush=True)
    for row in rows:
        row.update({"dataset": name, "n": n, "dim": dim, "k": K, "threads": THREADS})
    fields = ["dataset", "n", "dim", "k", "threads", "tool", "setting", "seconds", "wall_s", "build_s",
              "search_s", "recall", "recall_estimate", "estimate_low", "estimate_high", "peak_rss_bytes"]
    with open(out_dir / f"ann_{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / f"ann_{name}.json").write_text(json.dumps(rows, indent=1))
    plot(rows, out_dir / f"ann_{name}.png", f"{name}: {n} x {dim}, k = {K}, cosine")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dataset", action="append", choices=["blobs200k", "blobs1m", "uniprot20k", "gauss100k"])
    parser.add_argument("--work", default=os.environ.get("TMPDIR", "/tmp"))
    parser.add_argument("--probes", type=int, nargs="*", default=[1, 2, 4, 8])
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--nprobe", type=int, nargs="*", default=[1, 2, 4, 8, 16])
    parser.add_argument("--ef", type=int, nargs="*", default=[16, 32, 64, 128])
    parser.add_argument("--no-hnsw", action="store_true")
    parser.add_argument("--exact", action="store_true", help="also embsolve's exact kNN (n <= 200,000)")
    parser.add_argument("--peer", choices=["faiss", "hnswlib"], help=argparse.SUPPRESS)
    parser.add_argument("--peer-data", help=argparse.SUPPRESS)
    parser.add_argument("--peer-queries", help=argparse.SUPPRESS)
    parser.add_argument("--peer-truth", help=argparse.SUPPRESS)
    parser.add_argument("--peer-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        peer_main(args)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.dataset or ["blobs200k"]:
        bench_dataset(name, args, args.out)


if __name__ == "__main__":
    main()
