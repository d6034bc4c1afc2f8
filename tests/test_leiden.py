"""Leiden communities end to end: the same labels at 1, 2, 3 and 4 ranks and with 1 or 2 threads,
canonical labels, the outputs (`/leiden/labels` and its attributes, `run.json` `results.leiden`, the
ARI), and bad parameters refused with exit 2 on every rank."""

import json

import h5py
import numpy as np
import pytest

from conftest import run_mpi, write_config


def run_leiden(tmp_path, dataset, n_ranks, name, threads=1, **leiden):
    out = tmp_path / name
    config = write_config(tmp_path / f"{name}.toml", dataset, out, run={"threads": threads},
                          input={"label_column": "label"}, knn={"k": 10},
                          pagerank={"enabled": False}, spectral={"enabled": False},
                          leiden=leiden, output={"write_knn": False})
    run_mpi(n_ranks, "run", config, timeout=300)
    with h5py.File(out / "results.h5") as h5:
        labels = h5["/leiden/labels"][()]
        attrs = dict(h5["/leiden/labels"].attrs)
    return labels, attrs, json.loads((out / "run.json").read_text())["results"]


def test_the_same_labels_at_any_rank_and_thread_count(tmp_path, blobs_small):
    reference, attrs, results = run_leiden(tmp_path, blobs_small, 1, "r1")
    for n_ranks, threads in ((2, 1), (3, 1), (4, 1), (1, 2), (2, 2)):
        labels, _, other = run_leiden(tmp_path, blobs_small, n_ranks, f"r{n_ranks}t{threads}", threads)
        np.testing.assert_array_equal(labels, reference, err_msg=f"{n_ranks} ranks, {threads} threads")
        assert other["leiden"] == results["leiden"]
    rows = np.arange(len(reference))
    assert np.all(reference <= rows) and np.all(reference[reference] == reference), "labels not canonical"
    leiden = results["leiden"]
    assert leiden["n_clusters"] == len(np.unique(reference)) == int(attrs["n_clusters"])
    assert leiden["converged"] is True and leiden["iterations"] >= 1
    assert abs(leiden["modularity"] - float(attrs["modularity"])) < 1e-12
    assert 0.5 < leiden["modularity"] < 1.0
    assert results["ari"]["leiden"] > 0.99, results["ari"]


def test_a_higher_resolution_gives_more_communities(tmp_path, blobs_small):
    _, _, low = run_leiden(tmp_path, blobs_small, 2, "low", resolution=0.5)
    _, _, high = run_leiden(tmp_path, blobs_small, 2, "high", resolution=8.0)
    assert high["leiden"]["n_clusters"] > low["leiden"]["n_clusters"]
    _, _, cpm = run_leiden(tmp_path, blobs_small, 2, "cpm", objective="cpm", resolution=0.05)
    assert cpm["leiden"]["n_clusters"] >= 1


def test_a_graph_without_edges_gives_singletons(tmp_path, blobs_small):
    out = tmp_path / "none"
    config = write_config(tmp_path / "none.toml", blobs_small, out, knn={"k": 5},
                          graph={"min_similarity": 1.0}, pagerank={"enabled": False},
                          spectral={"enabled": False})
    run_mpi(2, "run", config, timeout=300)
    results = json.loads((out / "run.json").read_text())["results"]
    with h5py.File(out / "results.h5") as h5:
        labels = h5["/leiden/labels"][()]
    assert results["leiden"]["n_clusters"] == len(labels)
    np.testing.assert_array_equal(labels, np.arange(len(labels)))


@pytest.mark.parametrize("key,value,expected", [
    ("resolution", 0.0, "leiden.resolution"),
    ("resolution", -1.0, "leiden.resolution"),
    ("resolution", "nan", "leiden.resolution"),
    ("objective", "louvain", "objective"),
])
def test_bad_parameters_exit_2(tmp_path, blobs_small, key, value, expected):
    config = tmp_path / "bad.toml"
    write_config(config, blobs_small, tmp_path / "out", leiden={key: value})
    if value == "nan":
        config.write_text(config.read_text().replace('resolution = "nan"', "resolution = nan"))
    done = run_mpi(2, "run", config, check=False, timeout=120)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert not (tmp_path / "out" / "run.json").exists()
