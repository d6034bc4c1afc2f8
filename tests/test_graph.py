"""Graph, connected components and PageRank end to end: real runs on the blobs fixture compared with
scipy (components, a power-iteration PageRank on the graph rebuilt from the kNN lists in results.h5)
and across rank counts. (The graph checks at 1-7 ranks run in test_multirank.py.)"""

import json

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from conftest import run_mpi, write_config


def similarity_graph(indices, distances, symmetrize, weight, min_similarity):
    """The graph embsolve builds from cosine kNN lists (see src/dist/graph.rs), as a scipy CSR."""
    n, k = indices.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cols = indices.ravel().astype(np.int64)
    dist = distances.ravel().astype(np.float64)
    sigma = np.abs(distances[:, -1].astype(np.float64))
    keep = (1.0 - dist >= min_similarity) & (cols != rows)
    rows, cols, dist = rows[keep], cols[keep], dist[keep]
    low, high = np.minimum(rows, cols), np.maximum(rows, cols)
    key = low * n + high
    order = np.argsort(key, kind="stable")
    key, dist = key[order], dist[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    counts = np.diff(np.r_[starts, len(key)])
    pair_key, pair_dist = key[starts], np.minimum.reduceat(dist, starts)
    if symmetrize == "mutual":
        both = counts == 2
        pair_key, pair_dist = pair_key[both], pair_dist[both]
    a, b = pair_key // n, pair_key % n
    if weight == "similarity":
        w = np.clip(1.0 - pair_dist, 0.0, None)
    elif weight == "binary":
        w = np.ones_like(pair_dist)
    else:
        w = np.exp(-pair_dist**2 / (sigma[a] * sigma[b]))
    return sp.csr_matrix((np.r_[w, w], (np.r_[a, b], np.r_[b, a])), shape=(n, n))


def power_pagerank(matrix, damping=0.85, tol=1e-10, max_iter=200):
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


def min_row_labels(labels):
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return first[inverse]


def run_graph(tmp_path, data, n_ranks, name, **graph):
    out = tmp_path / name
    config = write_config(tmp_path / f"{name}.toml", data, out, graph=graph,
                          spectral={"enabled": False})
    run_mpi(n_ranks, "run", config)
    with h5py.File(out / "results.h5", "r") as f:
        result = {
            "indices": f["knn/indices"][...],
            "distances": f["knn/distances"][...],
            "labels": f["components/labels"][...],
            "scores": f["pagerank/scores"][...],
            "iterations": int(f["pagerank/scores"].attrs["iterations"]),
            "residual": float(f["pagerank/scores"].attrs["residual"]),
        }
    result["run"] = json.loads((out / "run.json").read_text())
    return result


def test_components_and_pagerank_match_scipy_at_any_rank_count(tmp_path, blobs_small):
    # The blobs' kNN similarities lie in [0.957, 0.994]: 0.98 leaves ~175 components, most of them
    # isolated vertices (dangling in PageRank).
    graph = {"min_similarity": 0.98}
    runs = {p: run_graph(tmp_path, blobs_small, p, f"p{p}", **graph) for p in [1, 2, 3, 4]}
    first = runs[1]
    matrix = similarity_graph(first["indices"], first["distances"], "union", "similarity", 0.98)
    n_expected, labels_expected = connected_components(matrix, directed=False)
    assert n_expected > 100, "min_similarity = 0.98 should cut the blobs into many components"
    assert (np.asarray(matrix.sum(axis=1)).ravel() == 0).any(), "isolated vertices expected"
    assert np.array_equal(first["labels"], min_row_labels(labels_expected))
    assert first["run"]["results"]["n_components"] == n_expected
    scores, iterations = power_pagerank(matrix)
    assert np.abs(first["scores"] - scores).sum() < 1e-9
    assert first["iterations"] == iterations
    assert first["residual"] < 1e-10
    assert first["run"]["results"]["pagerank_iterations"] == iterations
    assert abs(first["scores"].sum() - 1.0) < 1e-12
    for p, other in runs.items():
        assert np.array_equal(other["indices"], first["indices"]), f"{p} ranks: kNN lists"
        assert np.array_equal(other["labels"], first["labels"]), f"{p} ranks: labels"
        assert np.array_equal(other["scores"], first["scores"]), f"{p} ranks: PageRank bits"
        assert other["iterations"] == first["iterations"]


@pytest.mark.parametrize("symmetrize,weight", [("mutual", "gaussian"), ("union", "binary"),
                                               ("mutual", "similarity")])
def test_graph_variants_match_the_rebuilt_graph(tmp_path, blobs_small, symmetrize, weight):
    result = run_graph(tmp_path, blobs_small, 3, f"{symmetrize}-{weight}", symmetrize=symmetrize,
                       weight=weight, min_similarity=0.975)
    matrix = similarity_graph(result["indices"], result["distances"], symmetrize, weight, 0.975)
    n_expected, labels_expected = connected_components(matrix, directed=False)
    assert np.array_equal(result["labels"], min_row_labels(labels_expected))
    assert result["run"]["results"]["n_components"] == n_expected
    scores, _ = power_pagerank(matrix)
    assert np.abs(result["scores"] - scores).sum() < 1e-9


def test_min_similarity_with_l2_is_a_config_error(tmp_path, blobs_small):
    config = write_config(tmp_path / "l2.toml", blobs_small, tmp_path / "out", knn={"metric": "l2"},
                          graph={"min_similarity": 0.3}, spectral={"enabled": False})
    done = run_mpi(2, "run", config, check=False)
    assert done.returncode == 2, done.stderr
    assert "graph.min_similarity" in done.stderr
