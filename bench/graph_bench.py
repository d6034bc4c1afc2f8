"""Graph benchmark: embsolve's connected components and PageRank against scipy
(`scipy.sparse.csgraph.connected_components`, a scipy power-iteration PageRank) and igraph
(`components`, `pagerank` with PRPACK) on the same graph, in the same run.

embsolve runs on the blobs file (kNN graph, graph.min_similarity = 0.35 so the graph falls apart
into components); the peers get the graph rebuilt from the kNN lists that embsolve wrote to
results.h5, with the same rules (union symmetrisation, pair distance = the smaller of the two
directions, similarity weight 1 - d clipped at 0). Checks: identical partitions, PageRank L1
differences. Writes graph_times.csv and graph_accuracy.csv into --out.

    python bench/graph_bench.py --out bench/runs/DATE-MACHINE [--n 20000] [--repeats 5]
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import igraph
import numpy as np
import scipy
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("EMBSOLVE_BIN", ROOT / "target" / "release" / "embsolve"))
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", EMBSOLVE_NO_PROGRESS="1")


def run(cmd):
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=ENV)
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def embsolve_run(data, work, ranks, threads, min_similarity, k):
    out = work / f"out-{ranks}x{threads}"
    config = work / f"graph-{ranks}x{threads}.toml"
    config.write_text(
        f'[run]\nthreads = {threads}\n[input]\npath = "{data}"\n[knn]\nk = {k}\n'
        f"[graph]\nmin_similarity = {min_similarity}\n[spectral]\nenabled = false\n"
        f'[output]\ndir = "{out}"\ncheckpoint = false\n')
    run(["mpirun", "--oversubscribe", "--bind-to", "none", "-n", ranks, BIN, "run", config])
    summary = json.loads((out / "run.json").read_text())
    return out, summary


def peer_graph(indices, distances, min_similarity):
    """The symmetrised weighted graph of the kNN lists, by embsolve's rules."""
    n, k = indices.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cols = indices.ravel().astype(np.int64)
    dist = distances.ravel().astype(np.float64)
    keep = (1.0 - dist >= min_similarity) & (cols != rows)
    rows, cols, dist = rows[keep], cols[keep], dist[keep]
    low, high = np.minimum(rows, cols), np.maximum(rows, cols)
    key = low * n + high
    order = np.argsort(key, kind="stable")
    key, dist = key[order], dist[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    pair_key = key[starts]
    pair_dist = np.minimum.reduceat(dist, starts)
    a, b = pair_key // n, pair_key % n
    weight = np.clip(1.0 - pair_dist, 0.0, None)
    matrix = sp.csr_matrix((np.r_[weight, weight], (np.r_[a, b], np.r_[b, a])), shape=(n, n))
    return matrix, a, b, weight


def scipy_pagerank(matrix, damping, tol, max_iter):
    """Power iteration p <- d W D^-1 p + (d * dangling + 1 - d) / n (embsolve's iteration)."""
    n = matrix.shape[0]
    degree = np.asarray(matrix.sum(axis=1)).ravel()
    dangling = degree == 0
    inv = np.where(dangling, 0.0, 1.0 / np.where(dangling, 1.0, degree))
    p = np.full(n, 1.0 / n)
    for iteration in range(1, max_iter + 1):
        new = damping * (matrix @ (p * inv)) + (damping * p[dangling].sum() + 1.0 - damping) / n
        residual = np.abs(new - p).sum()
        p = new
        if residual < tol:
            break
    return p / p.sum(), iteration


def best_time(fn, repeats):
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return min(times), float(np.median(times)), value


def attribute(f, path, name):
    """An attribute of a dataset or, failing that, of its group."""
    if name in f[path].attrs:
        return f[path].attrs[name]
    return f[path].parent.attrs[name]


def min_row_labels(labels):
    """Relabel a partition by the smallest row of each part."""
    labels = np.asarray(labels)
    smallest = {}
    for row, label in enumerate(labels):
        smallest.setdefault(label, row)
    return np.array([smallest[label] for label in labels])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "graph")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--noise", type=float, default=2.5)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--min-similarity", type=float, default=0.35)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)

    data = args.work / f"blobs-{args.n}x{args.dim}"
    if not data.exists():
        run([BIN, "generate", "--kind", "blobs", "--n", args.n, "--dim", args.dim, "--clusters",
             args.clusters, "--noise", args.noise, "--seed", 0, "--format", "parquet", "--shards", 4,
             "--out", data])

    # embsolve at 1 rank x 2 threads and 2 ranks x 1 thread; best of `repeats` runs per phase.
    layouts = [(1, 2), (2, 1)]
    ours = {}
    outputs = {}
    for ranks, threads in layouts:
        phases = {"graph": [], "components": [], "pagerank": []}
        for _ in range(args.repeats):
            out, summary = embsolve_run(data, args.work, ranks, threads, args.min_similarity, args.k)
            for phase in phases:
                phases[phase].append(summary["phases"][phase]["max_s"])
        ours[(ranks, threads)] = ({p: (min(t), float(np.median(t))) for p, t in phases.items()},
                                  summary)
        outputs[(ranks, threads)] = out

    reference_out = outputs[layouts[0]]
    with h5py.File(reference_out / "results.h5", "r") as f:
        indices = f["knn/indices"][...]
        distances = f["knn/distances"][...]
        our_labels = f["components/labels"][...]
        our_n_components = int(attribute(f, "components/labels", "n_components"))
        our_scores = f["pagerank/scores"][...]
        our_iterations = int(attribute(f, "pagerank/scores", "iterations"))
    other = {}
    for layout in layouts[1:]:
        with h5py.File(outputs[layout] / "results.h5", "r") as f:
            other[layout] = (f["components/labels"][...], f["pagerank/scores"][...])

    build_best, build_median, (matrix, a, b, weight) = best_time(
        lambda: peer_graph(indices, distances, args.min_similarity), args.repeats)
    n_edges = len(weight)
    cc_best, cc_median, (n_cc, cc_labels) = best_time(
        lambda: connected_components(matrix, directed=False), args.repeats)
    pr_scipy_best, pr_scipy_median, (scipy_scores, scipy_iterations) = best_time(
        lambda: scipy_pagerank(matrix, 0.85, 1e-10, 200), args.repeats)
    graph = igraph.Graph(n=args.n, edges=np.c_[a, b].tolist(), directed=False)
    graph.es["weight"] = weight.tolist()
    ig_cc_best, ig_cc_median, ig_components = best_time(lambda: graph.connected_components(), args.repeats)
    ig_pr_best, ig_pr_median, ig_scores = best_time(
        lambda: graph.pagerank(weights="weight", damping=0.85, directed=False, implementation="prpack"),
        args.repeats)
    ig_scores = np.asarray(ig_scores)
    ig_labels = np.asarray(ig_components.membership)

    same_scipy = bool(np.array_equal(min_row_labels(cc_labels), our_labels))
    same_igraph = bool(np.array_equal(min_row_labels(ig_labels), our_labels))
    l1_igraph = float(np.abs(our_scores - ig_scores).sum())
    l1_scipy = float(np.abs(our_scores - scipy_scores).sum())

    times_path = args.out / "graph_times.csv"
    peers_total = cc_best + ig_pr_best
    with times_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["tool", "operation", "ranks", "threads_per_rank", "best_s", "median_s",
                         "n_vertices", "n_edges", "edges_per_s", "ratio_to_peer"])
        for (ranks, threads), (phases, summary) in ours.items():
            ours_total = phases["components"][0] + phases["pagerank"][0]
            for phase, peer in [("graph", build_best), ("components", cc_best),
                                ("pagerank", ig_pr_best)]:
                best, median = phases[phase]
                writer.writerow(["embsolve", phase, ranks, threads, f"{best:.6f}", f"{median:.6f}",
                                 args.n, n_edges, f"{n_edges / best:.4g}", f"{best / peer:.3f}"])
            writer.writerow(["embsolve", "components+pagerank", ranks, threads, f"{ours_total:.6f}", "",
                             args.n, n_edges, "", f"{ours_total / peers_total:.3f}"])
        for tool, op, best, median in [
            ("scipy", "graph (csr from knn)", build_best, build_median),
            ("scipy", "connected_components", cc_best, cc_median),
            ("scipy", "pagerank power iteration", pr_scipy_best, pr_scipy_median),
            ("igraph", "connected_components", ig_cc_best, ig_cc_median),
            ("igraph", "pagerank prpack", ig_pr_best, ig_pr_median),
            ("scipy+igraph", "components+pagerank", peers_total, None),
        ]:
            writer.writerow([tool, op, 1, 1, f"{best:.6f}", "" if median is None else f"{median:.6f}",
                             args.n, n_edges, f"{n_edges / best:.4g}", ""])

    accuracy_path = args.out / "graph_accuracy.csv"
    with accuracy_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["check", "value"])
        rows = [
            ("n_vertices", args.n), ("n_edges", n_edges),
            ("embsolve_n_components", our_n_components), ("scipy_n_components", n_cc),
            ("igraph_n_components", len(set(ig_labels))),
            ("same_partition_scipy", same_scipy), ("same_partition_igraph", same_igraph),
            ("pagerank_l1_vs_igraph", f"{l1_igraph:.3e}"), ("pagerank_l1_vs_scipy_power", f"{l1_scipy:.3e}"),
            ("embsolve_pagerank_iterations", our_iterations), ("scipy_pagerank_iterations", scipy_iterations),
            ("embsolve_scores_sum", f"{our_scores.sum():.17g}"),
        ]
        for layout, (labels, scores) in other.items():
            rows.append((f"labels_identical_{layout[0]}x{layout[1]}", bool(np.array_equal(labels, our_labels))))
            rows.append((f"pagerank_max_abs_diff_{layout[0]}x{layout[1]}",
                         f"{float(np.abs(scores - our_scores).max()):.3e}"))
        for row in rows:
            writer.writerow(row)
    versions = {"python": sys.version.split()[0], "numpy": np.__version__, "scipy": scipy.__version__,
                "igraph": igraph.__version__}
    (args.out / "graph_versions.json").write_text(json.dumps(versions, indent=2) + "\n")
    print(times_path.read_text())
    print(accuracy_path.read_text())
    ok = same_scipy and same_igraph and l1_igraph < 1e-6 and l1_scipy < 1e-6
    ok = ok and all(np.array_equal(l, our_labels) for l, _ in other.values())
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
