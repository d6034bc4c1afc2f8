"""End-to-end tests of the exact kNN through `embsolve run`: /knn/indices identical at 1 and 3 ranks
and equal to a numpy oracle. (The ring's multi-rank checks against the serial brute-force oracle,
on data with duplicate rows and equal distances, are `knn_*` in tests/test_multirank.py.)"""

import json

import h5py
import numpy as np
import pytest

from conftest import run_bin, run_mpi, write_config

def oracle(x, k):
    """Top-k by float64 cosine, self excluded, ties to the smaller row."""
    x = x.astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    return np.array([np.lexsort((np.arange(len(x)), -row))[:k] for row in sims])


def run_knn(tmp_path, data, n_ranks, k, tag):
    out = tmp_path / f"out_{tag}"
    config = write_config(tmp_path / f"{tag}.toml", data, out, input={"format": "npy"},
                          knn={"k": k, "metric": "cosine", "backend": "cpu"},
                          components={"enabled": False}, pagerank={"enabled": False},
                          spectral={"enabled": False}, output={"checkpoint": False})
    done = run_mpi(n_ranks, "run", config, check=False, timeout=300)
    if done.returncode != 0 and "is not built yet" in done.stderr:
        # Only while a later phase of the pipeline is still a skeleton stub in this build.
        pytest.skip("a pipeline phase is not in this build yet: " + done.stderr.strip().splitlines()[-1][:120])
    assert done.returncode == 0, done.stderr
    with h5py.File(out / "results.h5") as f:
        return f["/knn/indices"][...], f["/knn/distances"][...]


def test_run_writes_identical_exact_lists_at_1_and_3_ranks(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(500, 24)).astype(np.float32)
    data = tmp_path / "rows.npy"
    np.save(data, x)
    k = 8
    indices_1, distances_1 = run_knn(tmp_path, data, 1, k, "one")
    indices_3, distances_3 = run_knn(tmp_path, data, 3, k, "three")
    assert indices_1.shape == (500, k) and indices_1.dtype == np.int64
    np.testing.assert_array_equal(indices_1, indices_3)
    assert distances_1.tobytes() == distances_3.tobytes()
    want = oracle(x, k)
    # Continuous random data: float64 and the kernel's float32 agree on the order.
    assert (indices_1 == want).mean() > 0.999
    assert np.all(np.diff(distances_1, axis=1) >= 0)


def run_partitioned(tmp_path, data, n_ranks, tag, **knn):
    out = tmp_path / f"out_{tag}"
    config = write_config(tmp_path / f"{tag}.toml", data, out, input={"format": "npy"},
                          knn={"k": 8, "metric": "cosine", "backend": "cpu", "method": "partitioned", **knn},
                          components={"enabled": False}, pagerank={"enabled": False},
                          spectral={"enabled": False}, leiden={"enabled": False},
                          output={"checkpoint": False})
    done = run_mpi(n_ranks, "run", config, check=False, timeout=300)
    return done, out


def test_partitioned_lists_are_identical_at_1_to_4_ranks_and_the_estimate_matches(tmp_path):
    rng = np.random.default_rng(9)
    centres = rng.normal(size=(12, 24)) * 4
    x = (centres[rng.integers(0, 12, 3000)] + rng.normal(size=(3000, 24))).astype(np.float32)
    data = tmp_path / "rows.npy"
    np.save(data, x)
    results = []
    for n_ranks in (1, 2, 3, 4):
        done, out = run_partitioned(tmp_path, data, n_ranks, f"p{n_ranks}", recall=0.9, recall_sample=600)
        assert done.returncode == 0, done.stderr
        with h5py.File(out / "results.h5") as f:
            results.append((f["/knn/indices"][...], f["/knn/distances"][...]))
        summary = json.loads((out / "run.json").read_text())["results"]["knn"]
        assert summary["method"] == "partitioned" and summary["probes_from_recall"]
    for indices, distances in results[1:]:
        np.testing.assert_array_equal(indices, results[0][0])
        assert distances.tobytes() == results[0][1].tobytes()
    indices = results[0][0]
    assert not np.any(indices < 0) and not np.any(indices == np.arange(3000)[:, None])
    exact = oracle(x, 8)
    measured = np.mean([len(np.intersect1d(a, b)) / 8 for a, b in zip(indices, exact)])
    assert summary["recall_estimate"] >= 0.9
    assert abs(summary["recall_estimate"] - measured) < 0.02, (summary, measured)


@pytest.mark.parametrize("knn, key", [({"probes": 9, "partitions": 4}, "knn.probes"),
                                      ({"recall": 1.5}, "knn.recall"),
                                      ({"probes": 500}, "knn.probes")])
def test_partitioned_bad_settings_exit_2_on_every_rank(tmp_path, knn, key):
    x = np.random.default_rng(1).normal(size=(400, 8)).astype(np.float32)
    data = tmp_path / "rows.npy"
    np.save(data, x)
    done, out = run_partitioned(tmp_path, data, 2, "bad", **knn)
    assert done.returncode == 2, done.stderr
    assert key in done.stderr, done.stderr
    assert not (out / "run.json").exists()


@pytest.mark.parametrize("method", ["exact", "partitioned"])
@pytest.mark.parametrize("n_ranks", [1, 3])
def test_a_memory_plan_that_cannot_fit_exits_2_on_every_rank(tmp_path, method, n_ranks):
    x = np.random.default_rng(2).normal(size=(2000, 16)).astype(np.float32)
    data = tmp_path / "rows.npy"
    np.save(data, x)
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.toml", data, out, input={"format": "npy"},
                          run={"memory_per_rank": "64MiB"},
                          knn={"k": 8, "backend": "cpu", "method": method, "probes": 2})
    done = run_mpi(n_ranks, "run", config, check=False, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "the memory plan does not fit" in done.stderr, done.stderr
    assert "run.memory_per_rank" in done.stderr and "2000 rows x 16" in done.stderr, done.stderr
    assert not (out / "run.json").exists() and not (out / "results.h5").exists()
    # The same run with the memory stated large enough goes through.
    done = run_mpi(n_ranks, "run", config, "--set", 'run.memory_per_rank="2GiB"', check=False,
                   timeout=120)
    assert done.returncode == 0, done.stderr
    assert "memory plan: 2000 rows x 16" in done.stderr, done.stderr


def test_plan_prints_memory_and_work_and_refuses_what_cannot_fit(tmp_path):
    x = np.random.default_rng(3).normal(size=(1000, 32)).astype(np.float32)
    data = tmp_path / "rows.npy"
    np.save(data, x)
    config = write_config(tmp_path / "c.toml", data, tmp_path / "out", input={"format": "npy"})
    done = run_bin("plan", config, "--ranks", "4", check=False)
    assert done.returncode == 0, done.stderr
    assert "1000 rows x 32 on 4 rank(s), 250 rows per rank" in done.stdout, done.stdout
    assert "knn (exact)" in done.stdout and "verdict: fits" in done.stdout, done.stdout
    done = run_bin("plan", config, "--set", 'run.memory_per_rank="1M"', check=False)
    assert done.returncode == 2
    assert "memory plan: 1000 rows x 32" in done.stdout and "does not fit" in done.stderr
    done = run_bin("plan", config, "--set", 'run.memory_per_rank="lots"', check=False)
    assert done.returncode == 2 and "run.memory_per_rank" in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def test_a_target_beyond_the_break_even_gives_the_exact_lists(tmp_path):
    # Rows without clusters: 0.999 would need nearly every cell, so the exact lists are computed.
    x = np.random.default_rng(4).normal(size=(2500, 16)).astype(np.float32)
    data = tmp_path / "rows.npy"
    np.save(data, x)
    for n_ranks in (1, 3):
        done, out = run_partitioned(tmp_path, data, n_ranks, f"fb{n_ranks}", recall=0.999)
        assert done.returncode == 0, done.stderr
        assert "the exact lists are computed instead" in done.stderr, done.stderr
        summary = json.loads((out / "run.json").read_text())["results"]["knn"]
        assert summary["exact_fallback"] is True and summary["recall_estimate"] == 1.0
        with h5py.File(out / "results.h5") as f:
            np.testing.assert_array_equal(f["/knn/indices"][...], oracle(x, 8))
