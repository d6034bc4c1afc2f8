"""Spectral clustering benchmark: embsolve against scikit-learn and SciPy on the same kNN graph,
in the same run, on the same file.

1. `embsolve generate` writes seeded blobs (default N = 20,000, D = 128, 20 clusters, noise 2.5).
2. The rows are L2-normalised and their exact cosine kNN graph (k = 16, self excluded) is built once
   with scikit-learn; the affinity is W = (C + C^T) / 2 of the kNN connectivity C, which is what
   SpectralClustering(affinity="precomputed_nearest_neighbors") builds.
3. Peers on that same W (time of the spectral stage only: eigenpairs + k-means):
   - embsolve (`examples/spectral_bench.rs`: the solver of `embsolve run`, eigenpairs one connected
     component at a time, then k-means; 1 process, 2 threads), with the eigengap choice
     (n_clusters = 0) and with n_clusters = 20;
   - scikit-learn SpectralClustering(affinity="precomputed", eigen_solver="lobpcg" and "arpack");
   - scipy.sparse.linalg.eigsh(D^-1/2 W D^-1/2, which="LA") for the eigenvalues alone.
   Each reports wall time, ARI against the generated labels and the largest eigenvalue difference to
   an exact reference: the spectrum of D^-1/2 W D^-1/2 is the union of its connected components'
   spectra, so each component is solved on its own (dense eigh up to 4,000 rows, eigsh beyond, where
   the component's eigenvalue 1 is simple). eigsh on the whole graph is compared with it too: ARPACK
   returns a repeated eigenvalue (one per component) fewer times than its multiplicity.
4. With --pipeline, the whole `embsolve run` (read -> kNN -> graph -> spectral) at 1 and 2 ranks
   against SpectralClustering(affinity="nearest_neighbors", n_neighbors=16, eigen_solver="lobpcg")
   from the raw embeddings.

With --dataset DIR (a stage-1 dataset: manifest.json and Parquet shards with a label column, e.g.
the kaptive A. baumannii proteins of `make run`) the rows and labels come from there instead, and
the true number of labels is the k given to the peers.

Eigenpairs alone (stage "eigenpairs"): embsolve's solver, scipy eigsh (ARPACK) and lobpcg on the
whole graph, each with its time, largest residual |A v - lambda v| and largest eigenvalue error.

Usage: python bench/spectral_bench.py --out bench/runs/DATE-MACHINE [--n 20000] [--pipeline]
       python bench/spectral_bench.py --out ... --dataset data/emb/kaptive_ab20 --n-eigs 64
Writes spectral_<name>.csv (one row per peer) and prints the table.
"""

import argparse
import csv
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import eigsh, lobpcg
from sklearn.cluster import SpectralClustering
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("EMBSOLVE_BIN", ROOT / "target" / "release" / "embsolve"))
EXAMPLE = ROOT / "target" / "release" / "examples" / "spectral_bench"
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "EMBSOLVE_NO_PROGRESS": "1",
}


def generate(out, n, dim, clusters, noise, seed):
    subprocess.run([str(BIN), "generate", "--kind", "blobs", "--n", str(n), "--dim", str(dim),
                    "--clusters", str(clusters), "--noise", str(noise), "--seed", str(seed),
                    "--format", "npy", "--out", str(out)], check=True, capture_output=True)
    manifest = json.loads((out / "manifest.json").read_text())
    parts = [np.load(out / f["path"]) for f in manifest["files"]]
    embeddings = np.concatenate(parts).astype(np.float32)
    label_parts = [np.load(out / "label" / Path(f["path"]).name) for f in manifest["files"]]
    return embeddings, np.concatenate(label_parts)


def load_dataset(path):
    """Rows and integer labels of a stage-1 dataset (manifest.json + Parquet shards)."""
    import pyarrow.parquet as pq
    manifest = json.loads((path / "manifest.json").read_text())
    tables = [pq.read_table(path / f["path"]) for f in manifest["files"]]
    column, label = manifest.get("column", "embedding"), manifest.get("label_column", "label")
    embeddings = np.concatenate([np.stack(t.column(column).to_numpy(zero_copy_only=False))
                                 for t in tables]).astype(np.float32)
    names = np.concatenate([t.column(label).to_numpy(zero_copy_only=False) for t in tables])
    _, truth = np.unique(names.astype(str), return_inverse=True)
    return embeddings, truth


def largest_residual(operator, values, vectors):
    """max_i |A v_i - lambda_i v_i| over unit columns v_i."""
    vectors = vectors / np.linalg.norm(vectors, axis=0, keepdims=True)
    return float(np.max(np.linalg.norm(operator @ vectors - vectors * values, axis=0)))


def eigenpair_peers(affinity, n_eigs, tol, seed, reference):
    """scipy eigsh (ARPACK) and lobpcg on the whole graph: rows of the table."""
    operator = normalized(affinity)
    rows = []
    start = time.perf_counter()
    values, vectors = eigsh(operator, k=n_eigs, which="LA", tol=tol)
    seconds = time.perf_counter() - start
    order = np.argsort(values)[::-1]
    rows.append(dict(peer="scipy eigsh (ARPACK, LA, whole graph)", stage="eigenpairs",
                     seconds=seconds, max_eig_diff=float(np.max(np.abs(values[order] - reference))),
                     residual=largest_residual(operator, values, vectors)))
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    values, vectors = lobpcg(operator, rng.standard_normal((operator.shape[0], n_eigs)),
                             largest=True, tol=tol, maxiter=300)
    seconds = time.perf_counter() - start
    order = np.argsort(values)[::-1]
    rows.append(dict(peer="scipy lobpcg (whole graph)", stage="eigenpairs", seconds=seconds,
                     max_eig_diff=float(np.max(np.abs(values[order] - reference))),
                     residual=largest_residual(operator, values, vectors)))
    return rows


def knn_affinity(embeddings, k):
    x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    nn = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(x)
    graph = nn.kneighbors_graph(mode="connectivity")  # self excluded when querying the fit data
    return (0.5 * (graph + graph.T)).tocsr()


def normalized(affinity):
    degrees = np.asarray(affinity.sum(axis=1)).ravel()
    scale = sp.diags(1.0 / np.sqrt(np.maximum(degrees, 1e-300)))
    return (scale @ affinity @ scale).tocsr()


def reference_eigenvalues(affinity, n_eigs, tol):
    """The n_eigs largest eigenvalues of D^-1/2 W D^-1/2, component by component."""
    operator = normalized(affinity)
    _, component = connected_components(affinity, directed=False)
    values = []
    for c in np.unique(component):
        rows = np.flatnonzero(component == c)
        block = operator[rows][:, rows]
        if len(rows) <= 4000:
            values.extend(np.linalg.eigvalsh(block.toarray())[-n_eigs:])
        else:
            values.extend(eigsh(block, k=min(n_eigs, len(rows) - 2), which="LA", tol=tol,
                                return_eigenvectors=False))
    return np.sort(np.array(values))[::-1][:n_eigs]


def run_embsolve_stage(affinity, n_eigs, n_clusters, tol, max_iter, seed):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        affinity = affinity.tocsr()
        affinity.sort_indices()
        affinity.indptr.astype("<i8").tofile(tmp / "indptr.i64")
        affinity.indices.astype("<i8").tofile(tmp / "indices.i64")
        affinity.data.astype("<f8").tofile(tmp / "weights.f64")
        start = time.perf_counter()
        done = subprocess.run([str(EXAMPLE), str(tmp), str(n_eigs), str(n_clusters), str(tol),
                               str(max_iter), str(seed)], capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["wall_s"] = wall
        result["labels"] = np.fromfile(tmp / "labels.i32", dtype="<i4")
    return result


def sklearn_stage(affinity, n_clusters, solver, seed, queue):
    start = time.perf_counter()
    model = SpectralClustering(n_clusters=n_clusters, affinity="precomputed", eigen_solver=solver,
                               random_state=seed, assign_labels="kmeans")
    labels = model.fit_predict(affinity)
    queue.put((time.perf_counter() - start, labels))


def timed_in_child(target, args, timeout):
    """Run target(*args, queue) in a child process; (seconds, labels) or None on timeout."""
    queue = multiprocessing.Queue()
    child = multiprocessing.Process(target=target, args=(*args, queue))
    child.start()
    try:
        result = queue.get(timeout=timeout)
    except Exception:
        result = None
    child.join(timeout=5)
    if child.is_alive():
        child.kill()
        child.join()
    return result


def run_pipeline(dataset, out, n_ranks, n_eigs, max_iter, seed):
    config = out / f"pipeline_{n_ranks}.toml"
    config.write_text(
        f'[input]\npath = "{dataset}"\nlabel_column = "label"\n'
        f'[output]\ndir = "{out / f"pipeline_{n_ranks}"}"\nwrite_knn = false\ncheckpoint = false\n'
        f'[knn]\nk = 16\n[graph]\nweight = "binary"\n[components]\nenabled = false\n'
        f'[pagerank]\nenabled = false\n[spectral]\nn_eigs = {n_eigs}\nmax_iter = {max_iter}\nseed = {seed}\n')
    env = dict(os.environ, **MPI_ENV)
    # One rank runs alone, as a user would start it (no launcher, no MPI start-up); more go
    # through mpirun. Either way the wall time includes process start, reading and writing.
    command = [str(BIN), "run", str(config)]
    if n_ranks > 1:
        command = ["mpirun", "--bind-to", "none", "-n", str(n_ranks)] + command
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        print(f"embsolve run at {n_ranks} ranks failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    summary = json.loads((out / f"pipeline_{n_ranks}" / "run.json").read_text())
    return wall, summary


def sklearn_pipeline(embeddings, n_clusters, seed, queue):
    start = time.perf_counter()
    x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    model = SpectralClustering(n_clusters=n_clusters, affinity="nearest_neighbors", n_neighbors=16,
                               eigen_solver="lobpcg", random_state=seed, assign_labels="kmeans")
    labels = model.fit_predict(x)
    queue.put((time.perf_counter() - start, labels))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--dataset", type=Path, help="a stage-1 dataset with labels instead of blobs")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--noise", type=float, default=2.5)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--n-eigs", type=int, default=24)
    parser.add_argument("--tol", type=float, default=1e-8)
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arpack-timeout", type=float, default=300.0)
    parser.add_argument("--skip-sklearn", action="store_true", help="embsolve and eigsh only")
    parser.add_argument("--pipeline", action="store_true", help="also the whole embsolve run")
    parser.add_argument("--embsolve-only", action="store_true",
                        help="only the whole embsolve run (for files too large for the peers)")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2],
                        help="rank counts of the whole embsolve run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []

    with tempfile.TemporaryDirectory() as tmp:
        if args.dataset:
            dataset = args.dataset.resolve()
            embeddings, truth = load_dataset(dataset)
            args.n, args.dim = embeddings.shape
            args.clusters = int(truth.max()) + 1
            tag = dataset.name
        else:
            dataset = Path(tmp) / "blobs"
            embeddings, truth = generate(dataset, args.n, args.dim, args.clusters, args.noise,
                                         args.seed)
            tag = f"{args.n}" if args.noise == 2.5 else f"{args.n}_noise{args.noise:g}"
        if args.embsolve_only:
            args.pipeline, args.skip_sklearn = True, True
            reference = None
        if not args.embsolve_only:
            start = time.perf_counter()
            affinity = knn_affinity(embeddings, args.k)
            knn_s = time.perf_counter() - start
            print(f"n={args.n} dim={args.dim}: kNN graph (sklearn brute, shared by the peers) {knn_s:.2f} s, "
                  f"{affinity.nnz} nonzeros", flush=True)

            start = time.perf_counter()
            reference = reference_eigenvalues(affinity, args.n_eigs, args.tol)
            reference_s = time.perf_counter() - start
            rows.append(dict(peer="reference (per component)", stage="eigenvalues", seconds=reference_s,
                             ari="", n_clusters="", max_eig_diff=0.0, iterations="", converged=""))
            rows.extend(eigenpair_peers(affinity, args.n_eigs, args.tol, args.seed, reference))

            for n_clusters, name in ((0, "embsolve (eigengap)"), (args.clusters, "embsolve (k given)")):
                result = run_embsolve_stage(affinity, args.n_eigs, n_clusters, args.tol, args.max_iter,
                                            args.seed)
                diff = float(np.max(np.abs(np.array(result["eigenvalues"]) - reference)))
                if n_clusters == 0:
                    rows.append(dict(peer="embsolve (component spectrum)", stage="eigenpairs",
                                     seconds=result["eigen_s"], max_eig_diff=diff,
                                     residual=result["largest_residual"],
                                     iterations=result["iterations"], converged=result["converged"]))
                rows.append(dict(peer=name, stage="eigenpairs + kmeans", seconds=result["spectral_s"],
                                 ari=adjusted_rand_score(truth, result["labels"]),
                                 n_clusters=result["n_clusters"], max_eig_diff=diff,
                                 iterations=result["iterations"], converged=result["converged"]))

            if not args.skip_sklearn:
                for solver, timeout in (("lobpcg", 600.0), ("arpack", args.arpack_timeout)):
                    outcome = timed_in_child(sklearn_stage, (affinity, args.clusters, solver, args.seed),
                                             timeout)
                    peer = f"sklearn SpectralClustering ({solver})"
                    if outcome is None:
                        rows.append(dict(peer=peer, stage="eigenpairs + kmeans", seconds=f">{timeout:.0f}",
                                         ari="timeout", n_clusters=args.clusters, max_eig_diff="",
                                         iterations="", converged=""))
                    else:
                        rows.append(dict(peer=peer, stage="eigenpairs + kmeans", seconds=outcome[0],
                                         ari=adjusted_rand_score(truth, outcome[1]),
                                         n_clusters=args.clusters, max_eig_diff="", iterations="",
                                         converged=""))

        if args.pipeline:
            for n_ranks in args.ranks:
                outcome = run_pipeline(dataset, Path(tmp), n_ranks, args.n_eigs, args.max_iter, args.seed)
                if outcome is None:
                    continue
                wall, summary = outcome
                launch = "mpirun" if n_ranks > 1 else "alone"
                rows.append(dict(peer=f"embsolve run ({n_ranks} ranks, {launch})", stage="whole pipeline",
                                 seconds=wall, ari=summary["results"].get("ari", {}).get("spectral", ""),
                                 n_clusters=summary["results"]["n_clusters"],
                                 max_eig_diff="" if reference is None else float(np.max(
                                     np.abs(np.array(summary["results"]["eigenvalues"]) - reference))),
                                 iterations=summary["results"].get("lanczos_iterations", ""),
                                 converged=summary["results"].get("lanczos_converged", ""),
                                 knn_s=summary["phases"]["knn"]["max_s"],
                                 spectral_s=summary["phases"]["spectral"]["max_s"]))
            if not args.skip_sklearn:
                outcome = timed_in_child(sklearn_pipeline, (embeddings, args.clusters, args.seed), 900)
                if outcome is not None:
                    rows.append(dict(peer="sklearn SpectralClustering (nearest_neighbors, lobpcg)",
                                     stage="whole pipeline", seconds=outcome[0],
                                     ari=adjusted_rand_score(truth, outcome[1]),
                                     n_clusters=args.clusters, max_eig_diff="", iterations="",
                                     converged=""))

    # Whole-pipeline rows: wall time over scikit-learn's whole pipeline in the same run.
    sklearn_whole = [r["seconds"] for r in rows
                     if r["stage"] == "whole pipeline" and r["peer"].startswith("sklearn")]
    for row in rows:
        if row["stage"] == "whole pipeline" and sklearn_whole and isinstance(row["seconds"], float):
            row["ratio_vs_sklearn"] = row["seconds"] / sklearn_whole[0]
    # Eigenpair rows: time over ARPACK's in the same run.
    arpack = [r["seconds"] for r in rows if r["peer"].startswith("scipy eigsh")]
    for row in rows:
        if row["stage"] == "eigenpairs" and arpack:
            row["ratio_vs_arpack"] = row["seconds"] / arpack[0]
    path = args.out / f"spectral_{tag}_eigs{args.n_eigs}.csv"
    fields = ["n", "dim", "k", "n_eigs", "true_k", "peer", "stage", "seconds", "ari", "n_clusters",
              "max_eig_diff", "residual", "iterations", "converged", "knn_s", "spectral_s",
              "ratio_vs_sklearn", "ratio_vs_arpack"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow(dict(row, n=args.n, dim=args.dim, k=args.k, n_eigs=args.n_eigs,
                                 true_k=args.clusters))
    for row in rows:
        seconds = row["seconds"]
        seconds = f"{seconds:9.3f}" if isinstance(seconds, float) else f"{seconds:>9}"
        ari = row.get("ari", "")
        ari = f"{ari:.4f}" if isinstance(ari, float) else str(ari)
        ratio = row.get("ratio_vs_sklearn", row.get("ratio_vs_arpack", ""))
        ratio = f"{ratio:.3f}" if isinstance(ratio, float) else ratio
        diff = row.get("max_eig_diff", "")
        diff = f"{diff:.1e}" if isinstance(diff, float) else diff
        residual = row.get("residual", "")
        residual = f"{residual:.1e}" if isinstance(residual, float) else residual
        print(f"{row['peer']:<52} {row['stage']:<20} {seconds} s  ARI {ari:<8} k={row.get('n_clusters', '')} "
              f"max|dλ|={diff} res={residual} it={row.get('iterations', '')} ratio={ratio}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
