"""Exact kNN: embsolve's ring-pass kNN against faiss-cpu IndexFlatIP and scikit-learn
NearestNeighbors (brute), side by side in one run on the same file.

Data: `embsolve generate --kind blobs --n 20000 --dim 128 --clusters 20 --noise 2.5 --format npy`
when the binary can generate, else the same blobs drawn here with numpy (recorded in the JSON), or
any float32 .npy given with --npy. Rows are L2-normalised once, so cosine = inner product for all
tools. The exact answer is computed here in float64 (chunked brute force); recall@k is reported
against it and against faiss.

embsolve is timed by `target/release/examples/knn_bench` (the library's `dist::knn::exact_knn`
under mpirun, max over ranks, plus the GEMM kernel alone on the same tiles); when `embsolve run`
can read the file, the pipeline's `phases.knn.max_s` from run.json is recorded too.

    python bench/knn_bench.py --out bench/runs/DATE-MACHINE [--repeat 3] [--npy FILE]
"""

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("EMBSOLVE_BIN", ROOT / "target" / "release" / "embsolve"))
DRIVER = ROOT / "target" / "release" / "examples" / "knn_bench"
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "EMBSOLVE_NO_PROGRESS": "1",
}


def env(threads):
    merged = dict(os.environ)
    merged.update(MPI_ENV)
    merged["OMP_NUM_THREADS"] = str(threads)
    return merged


def make_data(args, work):
    """The input file (normalised float32 rows) and a description of where it came from."""
    if args.npy:
        x = np.load(args.npy).astype(np.float32)
        source = {"kind": "file", "path": str(args.npy)}
    else:
        raw = work / "blobs_raw.npy"
        cmd = [str(BIN), "generate", "--kind", "blobs", "--n", str(args.n), "--dim", str(args.dim),
               "--clusters", str(args.clusters), "--noise", str(args.noise), "--seed", str(args.seed),
               "--format", "npy", "--out", str(raw)]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env(1))
        if (raw / "embedding").is_dir():  # a dataset directory: embedding/ id/ label/ manifest.json
            found = sorted((raw / "embedding").glob("*.npy"))
        else:
            found = [raw] if raw.exists() else []
        if done.returncode == 0 and found:
            x = np.concatenate([np.load(p) for p in found]).astype(np.float32)
            source = {"kind": "embsolve generate", "command": " ".join(cmd[1:])}
        else:
            rng = np.random.default_rng(args.seed)
            centers = rng.normal(size=(args.clusters, args.dim))
            labels = rng.integers(0, args.clusters, args.n)
            x = (centers[labels] + args.noise * rng.normal(size=(args.n, args.dim))).astype(np.float32)
            source = {"kind": "numpy blobs (embsolve generate unavailable)",
                      "recipe": "centers ~ N(0,1)^dim, row = center + noise * N(0,1)^dim",
                      "n": args.n, "dim": args.dim, "clusters": args.clusters, "noise": args.noise,
                      "seed": args.seed, "generate_error": done.stderr.strip()[-300:]}
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    path = work / "blobs.npy"
    np.save(path, np.ascontiguousarray(x, dtype=np.float32))
    return path, x, source


def exact_answer(x, k, chunk=2000):
    """Top-k by float64 inner product, self excluded, ties to the smaller row."""
    x64 = x.astype(np.float64)
    out = np.empty((len(x), k), dtype=np.int64)
    for start in range(0, len(x), chunk):
        sims = x64[start:start + chunk] @ x64.T
        rows = np.arange(start, min(start + chunk, len(x)))
        sims[rows - start, rows] = -np.inf
        part = np.argpartition(-sims, k, axis=1)[:, :k + 1]
        for i in range(len(rows)):
            cand = part[i]
            order = np.lexsort((cand, -sims[i, cand]))
            out[start + i] = cand[order][:k]
    return out


def recall(found, truth):
    k = truth.shape[1]
    hits = sum(len(set(a) & set(b)) for a, b in zip(found[:, :k].tolist(), truth.tolist()))
    return hits / truth.size


def drop_self(indices, k):
    """faiss / sklearn include the query itself: remove it (or the last) to keep k others."""
    rows = np.arange(len(indices))[:, None]
    keep = indices != rows
    out = np.empty((len(indices), k), dtype=np.int64)
    for i in range(len(indices)):
        out[i] = indices[i][keep[i]][:k]
    return out


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_faiss(x, k, threads):
    import faiss
    faiss.omp_set_num_threads(threads)
    cpu = cpu_seconds()
    start = time.perf_counter()
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    _, found = index.search(x, k + 1)
    seconds = time.perf_counter() - start
    return seconds, cpu_seconds() - cpu, drop_self(found, k)


def run_sklearn(x, k, threads):
    from sklearn.neighbors import NearestNeighbors
    cpu = cpu_seconds()
    start = time.perf_counter()
    model = NearestNeighbors(n_neighbors=k + 1, algorithm="brute", metric="cosine", n_jobs=threads)
    model.fit(x)
    _, found = model.kneighbors(x)
    seconds = time.perf_counter() - start
    return seconds, cpu_seconds() - cpu, drop_self(found, k)


def run_embsolve(path, k, ranks, threads, work, tag):
    prefix = work / f"embsolve_{tag}"
    cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-n", str(ranks), str(DRIVER), str(path), str(k), "cosine",
           str(threads), str(prefix)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env(threads), timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr}")
    report = json.loads(Path(f"{prefix}.json").read_text())
    return report, np.load(f"{prefix}.indices.npy")


def run_pipeline(path, k, ranks, threads, work, tag):
    """`embsolve run` with only the kNN phase that matters; None when the binary cannot read npy."""
    out = work / f"pipeline_{tag}"
    config = work / f"pipeline_{tag}.toml"
    config.write_text(f'[run]\nthreads = {threads}\n[input]\npath = "{path}"\nformat = "npy"\n'
                      f'[knn]\nk = {k}\nmetric = "cosine"\nbackend = "cpu"\n'
                      f'[components]\nenabled = false\n[pagerank]\nenabled = false\n'
                      f'[spectral]\nenabled = false\n[output]\ndir = "{out}"\ncheckpoint = false\n')
    cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-n", str(ranks), str(BIN), "run", str(config)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env(threads), timeout=600)
    if done.returncode != 0:
        return None, done.stderr.strip()[-300:]
    return json.loads((out / "run.json").read_text())["phases"]["knn"]["max_s"], ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--tag", default="", help="suffix of the output file names (several runs)")
    parser.add_argument("--npy", type=Path)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--noise", type=float, default=2.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sklearn", action=argparse.BooleanOptionalAction, default=True,
                        help="also time scikit-learn brute force (first repetition only: it is slow)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="knn_bench_"))
    path, x, source = make_data(args, work)
    n, dim = x.shape
    flops = 2.0 * n * n * dim
    k = args.k
    truth = exact_answer(x, k)

    embsolve_configs = [("embsolve 1x2", 1, 2), ("embsolve 2x1", 2, 1)]
    rows = []
    faiss_lists = None
    embsolve_lists = []
    for rep in range(args.repeat):
        load = os.getloadavg()[0]
        seconds, cpu, found = run_faiss(x, k, 2)
        faiss_lists = found
        rows.append({"tool": "faiss IndexFlatIP", "ranks": 1, "threads": 2, "rep": rep, "wall_s": seconds,
                     "cpu_s": cpu,
                     "recall_exact": recall(found, truth), "recall_faiss": 1.0, "load1": load})
        for name, ranks, threads in embsolve_configs:
            report, found = run_embsolve(path, k, ranks, threads, work, f"{ranks}x{threads}_{rep}")
            embsolve_lists.append(found)
            rows.append({"tool": name, "ranks": ranks, "threads": threads, "rep": rep,
                         "wall_s": report["knn_s"], "cpu_s": report["knn_cpu_s_all_ranks"],
                         "gemm_only_s": report["gemm_only_s"],
                         "gemm_only_gflops": report["gemm_only_gflops"],
                         "exact_evaluations_per_query": report["exact_evaluations_per_query"],
                         "recall_exact": recall(found, truth), "recall_faiss": recall(found, faiss_lists),
                         "load1": load})
        if args.sklearn and rep == 0:
            seconds, cpu, found = run_sklearn(x, k, 2)
            rows.append({"tool": "sklearn brute", "ranks": 1, "threads": 2, "rep": rep, "wall_s": seconds,
                         "cpu_s": cpu,
                         "recall_exact": recall(found, truth), "recall_faiss": recall(found, faiss_lists),
                         "load1": load})
        for name, ranks, threads in embsolve_configs:
            seconds, why = run_pipeline(path, k, ranks, threads, work, f"{ranks}x{threads}_{rep}")
            if seconds is not None:
                rows.append({"tool": name.replace("embsolve", "embsolve run"), "ranks": ranks,
                             "threads": threads, "rep": rep, "wall_s": seconds, "load1": load})
            elif rep == 0:
                print(f"embsolve run unavailable: {why}", file=sys.stderr)
    for row in rows:
        row["gflops"] = flops / row["wall_s"] / 1e9

    fields = ["tool", "ranks", "threads", "rep", "wall_s", "cpu_s", "gflops", "recall_exact", "recall_faiss",
              "gemm_only_s", "gemm_only_gflops", "exact_evaluations_per_query", "load1"]
    with open(args.out / f"knn_runs{args.tag}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)

    def best(tool):
        picked = [r for r in rows if r["tool"] == tool]
        return min(picked, key=lambda r: r["wall_s"]) if picked else None

    faiss_best = best("faiss IndexFlatIP")
    summary = []
    for tool in dict.fromkeys(r["tool"] for r in rows):
        b = best(tool)
        times = sorted(r["wall_s"] for r in rows if r["tool"] == tool)
        entry = {"tool": tool, "ranks": b["ranks"], "threads": b["threads"], "best_s": b["wall_s"],
                 "median_s": times[len(times) // 2], "gflops_best": flops / b["wall_s"] / 1e9,
                 "cpu_s_of_best": b.get("cpu_s"),
                 "ratio_vs_faiss_best": b["wall_s"] / faiss_best["wall_s"],
                 "recall_exact": b.get("recall_exact"), "recall_faiss": b.get("recall_faiss")}
        if "gemm_only_s" in b:
            entry["gemm_only_gflops"] = b["gemm_only_gflops"]
            entry["tile_loop_fraction_of_gemm"] = b["gemm_only_s"] / b["wall_s"]
        summary.append(entry)
    with open(args.out / f"knn_summary{args.tag}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(key for e in summary for key in e)))
        writer.writeheader()
        writer.writerows(summary)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    meta = {"source": source, "commit": commit, "n": n, "dim": dim, "k": k, "flops_per_run": flops, "repeat": args.repeat,
            "host": platform.node(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
            "numpy": np.__version__, "started_load1": rows[0]["load1"],
            "embsolve_lists_identical_across_runs_and_rank_counts":
                all(np.array_equal(found, embsolve_lists[0]) for found in embsolve_lists),
            "summary": summary}
    try:
        import faiss, sklearn
        meta["faiss"] = faiss.__version__
        meta["sklearn"] = sklearn.__version__
    except ImportError:
        pass
    (args.out / f"knn_meta{args.tag}.json").write_text(json.dumps(meta, indent=2) + "\n")
    for entry in summary:
        print(json.dumps(entry))


if __name__ == "__main__":
    main()
