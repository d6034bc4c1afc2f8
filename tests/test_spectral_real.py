"""Spectral clustering on real labelled proteins: the capsule-locus proteins of A. baumannii
(kaptive-data, 3,503 proteins of the 48 genes seen at least 20 times), embedded by stage 1 (Ray
Data, protein 3-mers hashed into 4,096 dims). embsolve with the true number of genes must cluster
at least as well as scikit-learn's SpectralClustering on the same graph (ARI against the genes,
minus 0.01), and its automatic cluster count must lie within 20% of the number of genes."""

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from conftest import ROOT, run_mpi, write_config

pytest.importorskip("sklearn")
from sklearn.cluster import SpectralClustering  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402


@pytest.fixture(scope="module")
def kaptive(tmp_path_factory):
    """The stage-1 dataset of the kaptive proteins and their gene labels (fetched from the Debian
    package and embedded by Ray here)."""
    fetched = subprocess.run([str(ROOT / "scripts" / "fetch_data.sh"), "kaptive-data"], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
    if fetched.returncode != 0:
        pytest.fail(f"scripts/fetch_data.sh kaptive-data failed:\n{fetched.stderr}")
    source = ROOT / "data" / "kaptive_ab20"
    out = tmp_path_factory.mktemp("kaptive") / "emb"
    embed = subprocess.run(
        [sys.executable, "-m", "embsolve_ray", "embed", "--input", str(source / "proteins.fasta"),
         "--alphabet", "protein", "--k", "3", "--method", "hash", "--dim", "4096",
         "--labels", str(source / "labels.tsv"), "--label-column", "gene", "--out", str(out)],
        cwd=ROOT / "ray", capture_output=True, text=True, timeout=600,
        env=dict(os.environ, RAY_AUTH_MODE="disabled"))
    assert embed.returncode == 0, embed.stderr[-3000:]
    import pyarrow.parquet as pq
    manifest = json.loads((out / "manifest.json").read_text())
    names = np.concatenate([pq.read_table(out / f["path"]).column("label").to_numpy(zero_copy_only=False)
                            for f in manifest["files"]])
    _, truth = np.unique(names.astype(str), return_inverse=True)
    return out, truth


def run(tmp_path, dataset, name, n_clusters, n_ranks=2):
    out = tmp_path / name
    config = write_config(tmp_path / f"{name}.toml", dataset, out,
                          input={"label_column": "label"}, knn={"k": 16, "metric": "cosine"},
                          graph={"weight": "similarity"},
                          spectral={"n_eigs": 96, "n_clusters": n_clusters})
    run_mpi(n_ranks, "run", config, timeout=600)
    with h5py.File(out / "results.h5") as h5:
        labels = h5["/spectral/labels"][()]
        indices = h5["/knn/indices"][()]
        distances = h5["/knn/distances"][()].astype(np.float64)
    return labels, indices, distances, json.loads((out / "run.json").read_text())["results"]


def same_graph(indices, distances):
    """W of embsolve's graph from its lists: union symmetrisation, cosine similarity weights."""
    n, k = indices.shape
    rows = np.repeat(np.arange(n), k)
    w = sp.csr_matrix((np.maximum(1.0 - distances.ravel(), 0.0), (rows, indices.ravel())), shape=(n, n))
    return w.maximum(w.T).tocsr()


def test_kaptive_clusters_at_least_as_well_as_sklearn_on_the_same_graph(tmp_path, kaptive):
    dataset, truth = kaptive
    n_genes = int(truth.max()) + 1
    assert n_genes == 48
    labels, indices, distances, results = run(tmp_path, dataset, "given", n_genes)
    assert results["spectral"]["converged"] is True
    assert results["spectral"]["n_clusters_from"] == "config"
    ours = adjusted_rand_score(truth, labels)
    assert abs(ours - results["ari"]["spectral"]) < 1e-9
    affinity = same_graph(indices, distances)
    theirs = SpectralClustering(n_clusters=n_genes, affinity="precomputed", eigen_solver="arpack",
                                random_state=0, assign_labels="kmeans").fit_predict(affinity)
    theirs = adjusted_rand_score(truth, theirs)
    assert ours >= theirs - 0.01, f"embsolve ARI {ours:.4f}, scikit-learn {theirs:.4f}"


def test_kaptive_automatic_cluster_count_is_near_the_gene_count(tmp_path, kaptive):
    dataset, truth = kaptive
    n_genes = int(truth.max()) + 1
    labels, _, _, results = run(tmp_path, dataset, "auto", 0)
    chosen = results["n_clusters"]
    gap = results["spectral"]["eigengap"]
    assert results["spectral"]["n_clusters_from"] == "eigengap"
    assert gap["n_clusters"] == chosen and gap["first_k"] == 2
    assert len(gap["log_ratios"]) == len(results["eigenvalues"]) - 2
    assert abs(chosen - n_genes) <= 0.2 * n_genes, f"chose {chosen} clusters for {n_genes} genes"
    assert adjusted_rand_score(truth, labels) >= 0.85


def test_kaptive_leiden_matches_leidenalg_on_the_same_graph_at_any_rank_count(tmp_path, kaptive):
    """The default Leiden (no cluster count given) against leidenalg on embsolve's own graph: ARI
    at least leidenalg's minus 0.01, modularity at least leidenalg's minus 0.005; the same labels at 1
    and 3 ranks."""
    leidenalg = pytest.importorskip("leidenalg")
    import igraph as ig
    dataset, truth = kaptive
    labels = {}
    for n_ranks in (1, 2, 3, 4):
        out = tmp_path / f"leiden{n_ranks}"
        config = write_config(tmp_path / f"leiden{n_ranks}.toml", dataset, out,
                              input={"label_column": "label"}, knn={"k": 16, "metric": "cosine"},
                              graph={"weight": "similarity"}, spectral={"enabled": False})
        run_mpi(n_ranks, "run", config, timeout=600)
        with h5py.File(out / "results.h5") as h5:
            labels[n_ranks] = h5["/leiden/labels"][()]
            indices = h5["/knn/indices"][()]
            distances = h5["/knn/distances"][()].astype(np.float64)
        results = json.loads((out / "run.json").read_text())["results"]
    for n_ranks in (2, 3, 4):
        np.testing.assert_array_equal(labels[n_ranks], labels[1])
    affinity = sp.triu(same_graph(indices, distances), k=1).tocoo()
    g = ig.Graph(n=len(truth), edges=list(zip(affinity.row.tolist(), affinity.col.tolist())))
    g.es["weight"] = affinity.data.tolist()
    theirs = leidenalg.find_partition(g, leidenalg.RBConfigurationVertexPartition, weights="weight",
                                      n_iterations=-1, seed=0).membership
    ours = adjusted_rand_score(truth, labels[1])
    assert abs(ours - results["ari"]["leiden"]) < 1e-9
    assert ours >= adjusted_rand_score(truth, theirs) - 0.01
    our_q = g.modularity(labels[1].tolist(), weights="weight")
    assert abs(our_q - results["leiden"]["modularity"]) < 1e-9
    assert our_q >= g.modularity(theirs, weights="weight") - 0.005
