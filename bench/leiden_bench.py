"""Leiden benchmark: the kernels crate's deterministic Leiden (`examples/leiden_bench.rs`, one
process, --threads threads, default 2) against leidenalg, igraph `community_leiden` and networkit
ParallelLeiden (as many threads) on the same graph, in the same run: time, modularity (computed
by igraph for every partition), number of communities, ARI against the labels where there are
labels, and edges per second.

The graph is the exact cosine kNN graph (k = 16, self excluded) of the rows, union-symmetrised with
cosine-similarity weights (embsolve's default graph), built once with scikit-learn (with
--embsolve-knn, or above 50,000 rows, by `embsolve run` with only the kNN phase, its lists read back
from results.h5).

Usage: python bench/leiden_bench.py --out bench/runs/DATE-MACHINE --dataset data/emb/kaptive_ab20
       python bench/leiden_bench.py --out ... --n 20000 --dim 128 --clusters 20 --noise 2.5
Writes leiden_<name>.csv and prints the table.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import igraph as ig
import leidenalg
import networkit as nk
import numpy as np
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spectral_bench import generate, load_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "target" / "release" / "examples" / "leiden_bench"


def union_similarity_graph(indices, distances):
    """W from cosine kNN lists (n x k): union-symmetrised, weights 1 - distance clipped at 0."""
    n, k = indices.shape
    w = sp.csr_matrix((np.maximum(1.0 - distances.ravel(), 0.0), (np.repeat(np.arange(n), k), indices.ravel())),
                      shape=(n, n))
    w = w.maximum(w.T).tocsr()
    w.sort_indices()
    return w


def knn_graph(embeddings, k):
    x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    nn = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(x)
    distances, indices = nn.kneighbors(n_neighbors=k)  # self excluded
    return union_similarity_graph(indices, distances)


def embsolve_knn_graph(dataset, k, tmp):
    """The same graph from `embsolve run`'s exact kNN lists (only the kNN phase runs)."""
    out = tmp / "knn_run"
    config = tmp / "knn.toml"
    config.write_text(f'[input]\npath = "{dataset}"\n[output]\ndir = "{out}"\ncheckpoint = false\n'
                      f'[knn]\nk = {k}\nmetric = "cosine"\n[components]\nenabled = false\n'
                      f'[pagerank]\nenabled = false\n[leiden]\nenabled = false\n'
                      f'[spectral]\nenabled = false\n')
    subprocess.run([str(ROOT / "target" / "release" / "embsolve"), "run", str(config)], check=True,
                   capture_output=True, env=dict(os.environ, EMBSOLVE_NO_PROGRESS="1"))
    with h5py.File(out / "results.h5") as h5:
        indices = h5["/knn/indices"][()]
        distances = h5["/knn/distances"][()].astype(np.float64)
    return union_similarity_graph(indices, distances)


def as_igraph(w):
    upper = sp.triu(w, k=1).tocoo()
    g = ig.Graph(n=w.shape[0], edges=list(zip(upper.row.tolist(), upper.col.tolist())))
    g.es["weight"] = upper.data.tolist()
    return g


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--dataset", type=Path)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--noise", type=float, default=2.5)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--embsolve-knn", action="store_true", help="the kNN graph from embsolve run")
    parser.add_argument("--threads", type=int, default=2, help="for embsolve and networkit")
    parser.add_argument("--skip-leidenalg", action="store_true", help="leidenalg is slow on large graphs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.dataset:
            dataset = args.dataset.resolve()
            embeddings, truth = load_dataset(dataset)
            tag = args.dataset.name
        else:
            dataset = tmp / "blobs"
            embeddings, truth = generate(dataset, args.n, args.dim, args.clusters, args.noise, args.seed)
            tag = f"blobs{args.n}"
        if args.embsolve_knn or len(embeddings) > 50_000:
            w = embsolve_knn_graph(dataset, args.k, tmp)
        else:
            w = knn_graph(embeddings, args.k)
        g = as_igraph(w)
        n_edges = g.ecount()
        print(f"{tag}: {w.shape[0]} nodes, {n_edges} undirected edges", flush=True)
        rows = []

        def record(peer, seconds, labels, extra=None):
            labels = np.asarray(labels)
            modularity = g.modularity(labels.tolist(), weights="weight", resolution=args.resolution)
            rows.append(dict(peer=peer, seconds=seconds, modularity=modularity,
                             n_communities=len(np.unique(labels)),
                             ari=adjusted_rand_score(truth, labels), edges_per_s=n_edges / seconds,
                             **(extra or {})))

        w.indptr.astype("<i8").tofile(tmp / "indptr.i64")
        w.indices.astype("<i8").tofile(tmp / "indices.i64")
        w.data.astype("<f8").tofile(tmp / "weights.f64")
        done = subprocess.run([str(EXAMPLE), str(tmp), str(args.resolution), "0", str(args.seed)],
                              capture_output=True, text=True, check=True,
                              env=dict(os.environ, RAYON_NUM_THREADS=str(args.threads)))
        result = json.loads(done.stdout.strip().splitlines()[-1])
        labels = np.fromfile(tmp / "labels.i64", dtype="<i8")
        record(f"embsolve Leiden (kernel, {args.threads} threads)", result["leiden_s"], labels,
               dict(own_modularity=result["modularity"], iterations=result["iterations"]))

        if not args.skip_leidenalg:
            start = time.perf_counter()
            partition = leidenalg.find_partition(g, leidenalg.RBConfigurationVertexPartition,
                                                 weights="weight", resolution_parameter=args.resolution,
                                                 n_iterations=-1, seed=args.seed)
            record("leidenalg (RBConfiguration, until stable)", time.perf_counter() - start,
                   partition.membership)

        start = time.perf_counter()
        communities = g.community_leiden(objective_function="modularity", weights="weight",
                                         resolution=args.resolution, n_iterations=-1)
        record("igraph community_leiden (modularity, until stable)", time.perf_counter() - start,
               communities.membership)

        nk.setNumberOfThreads(args.threads)
        upper = sp.triu(w, k=1).tocoo()
        nkg = nk.Graph(w.shape[0], weighted=True)
        nkg.addEdges((upper.data, (upper.row, upper.col)))
        start = time.perf_counter()
        algorithm = nk.community.ParallelLeiden(nkg, gamma=args.resolution)
        algorithm.run()
        seconds = time.perf_counter() - start
        record(f"networkit ParallelLeiden ({args.threads} threads)", seconds, algorithm.getPartition().getVector())

    path = args.out / f"leiden_{tag}.csv"
    fields = ["peer", "seconds", "modularity", "n_communities", "ari", "edges_per_s", "own_modularity",
              "iterations"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        print(f"{row['peer']:<52} {row['seconds']:8.3f} s  Q {row['modularity']:.5f}  "
              f"communities {row['n_communities']:<6} ARI {row['ari']:.4f}  {row['edges_per_s']:.3g} edges/s")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
