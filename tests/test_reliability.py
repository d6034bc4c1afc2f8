"""Reliability: the bad-input catalogue on 3 ranks, signals, rank loss, atomic results, checkpoint
and resume, and the determinism matrix (ranks x threads). Every test runs the real binary under real
OpenMPI ranks."""

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import BIN, env, run_bin, run_mpi, write_config

CATALOGUE_RANKS = 3
DEADLINE_S = 30

# Every rank records its own exit status, so "exit 2 on every rank" is checked, not inferred.
RANK_WRAPPER = """#!/bin/sh
"$@"
status=$?
echo "$status" > "$EMBSOLVE_STATUS_DIR/rank-$OMPI_COMM_WORLD_RANK"
exit $status
"""


def run_every_rank(tmp_path, n_ranks, *args):
    """mpirun -n n_ranks embsolve ARGS; returns (per-rank exit statuses, stderr, seconds)."""
    wrapper = tmp_path / "rank_wrapper.sh"
    wrapper.write_text(RANK_WRAPPER)
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    status_dir = tmp_path / "status"
    status_dir.mkdir(exist_ok=True)
    for old in status_dir.iterdir():
        old.unlink()
    run_env = env()
    run_env["EMBSOLVE_STATUS_DIR"] = str(status_dir)
    # Let every rank finish on its own (mpirun would otherwise kill the others when one exits
    # non-zero, hiding their statuses).
    cmd = ["mpirun", "--oversubscribe", "--mca", "orte_abort_on_non_zero_status", "0", "-n", str(n_ranks),
           str(wrapper), str(BIN), *map(str, args)]
    start = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=DEADLINE_S + 30, env=run_env)
    seconds = time.monotonic() - start
    statuses = {}
    for rank in range(n_ranks):
        path = status_dir / f"rank-{rank}"
        statuses[rank] = int(path.read_text()) if path.exists() else None
    return statuses, done.stdout + done.stderr, seconds


def ray_parquet(path, rows, ids=None, column="embedding", value_type=pa.float32()):
    """One Parquet shard as Ray writes it (large_list<float> tensor column, id column)."""
    n = len(rows)
    ids = list(range(n)) if ids is None else ids
    embedding = pa.array([list(map(float, r)) for r in rows], type=pa.large_list(value_type))
    table = pa.table({"id": pa.array(ids, type=pa.int64()), column: embedding})
    pq.write_table(table, path, row_group_size=max(1, n // 3))
    return path


def blob_rows(n, dim, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)).astype(np.float32) + 0.5


def case_missing_path(tmp):
    return tmp / "no-such-dataset", {}, "no-such-dataset"


def case_empty_directory(tmp):
    d = tmp / "empty"
    d.mkdir()
    return d, {}, "empty"


def case_dims_differ_across_shards(tmp):
    d = tmp / "dims"
    d.mkdir()
    ray_parquet(d / "part-000.parquet", blob_rows(40, 8), ids=list(range(40)))
    ray_parquet(d / "part-001.parquet", blob_rows(40, 9), ids=list(range(40, 80)))
    return d, {}, "part-001.parquet"


def case_ragged_rows(tmp):
    d = tmp / "ragged"
    d.mkdir()
    rows = [list(r) for r in blob_rows(60, 8)]
    rows[37] = rows[37][:5]
    ray_parquet(d / "part-000.parquet", rows)
    return d, {}, "part-000.parquet"


def case_nan(tmp):
    d = tmp / "nan"
    d.mkdir()
    rows = blob_rows(60, 8)
    rows[41, 3] = np.nan
    ray_parquet(d / "part-000.parquet", rows)
    return d, {}, "41"


def case_inf(tmp):
    path = tmp / "inf.npy"
    rows = blob_rows(60, 8)
    rows[52, 0] = np.inf
    np.save(path, rows)
    return path, {}, "52"


def case_hdf5_1d(tmp):
    path = tmp / "flat.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("embedding", data=np.arange(100, dtype=np.float32))
    return path, {}, "flat.h5"


def case_object_npy(tmp):
    path = tmp / "object.npy"
    np.save(path, np.array([np.zeros(3), np.zeros(4)], dtype=object), allow_pickle=True)
    return path, {}, "object.npy"


def case_truncated_parquet(tmp):
    d = tmp / "truncated"
    d.mkdir()
    ray_parquet(d / "part-000.parquet", blob_rows(60, 8), ids=list(range(60)))
    bad = ray_parquet(d / "part-001.parquet", blob_rows(60, 8), ids=list(range(60, 120)))
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    return d, {}, "part-001.parquet"


def case_string_column(tmp):
    d = tmp / "strings"
    d.mkdir()
    table = pa.table({"id": pa.array(range(30), type=pa.int64()),
                      "embedding": pa.array([f"row {i}" for i in range(30)])})
    pq.write_table(table, d / "part-000.parquet")
    return d, {}, "embedding"


def case_missing_column(tmp):
    d = tmp / "nocolumn"
    d.mkdir()
    ray_parquet(d / "part-000.parquet", blob_rows(60, 8), column="vector")
    return d, {}, "embedding"


def case_duplicate_ids(tmp):
    d = tmp / "dupids"
    d.mkdir()
    ids = list(range(90))
    ids[77] = 12
    ray_parquet(d / "part-000.parquet", blob_rows(90, 8), ids=ids)
    return d, {}, "12"


def case_zero_vector(tmp):
    path = tmp / "zero.npy"
    rows = blob_rows(60, 8)
    rows[44] = 0.0
    np.save(path, rows)
    return path, {}, "44"


def case_manifest_escape(tmp):
    d = tmp / "escape"
    d.mkdir()
    outside = ray_parquet(tmp / "outside.parquet", blob_rows(60, 8))
    manifest = {"format": "parquet", "column": "embedding", "id_column": "id", "label_column": "",
                "dim": 8, "dtype": "float32", "n_rows": 60,
                "files": [{"path": "../" + outside.name, "rows": 60}]}
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d, {}, "outside.parquet"


def case_manifest_lists_a_file_twice(tmp):
    d = tmp / "twice"
    d.mkdir()
    ray_parquet(d / "part-0.parquet", blob_rows(60, 8))
    manifest = {"format": "parquet", "column": "embedding", "id_column": "id", "label_column": "",
                "dim": 8, "dtype": "float32", "n_rows": 120,
                "files": [{"path": "part-0.parquet", "rows": 60}, {"path": "./part-0.parquet", "rows": 60}]}
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d, {}, "listed twice"


def case_npy_id_shard_missing(tmp):
    d = tmp / "cols"
    for sub in ("embedding", "id"):
        (d / sub).mkdir(parents=True)
    for i in range(2):
        np.save(d / "embedding" / f"part-{i}.npy", blob_rows(40, 8, seed=i))
    np.save(d / "id" / "part-0.npy", np.arange(40, dtype=np.int64))
    return d, {}, "part-1.npy"


def case_uint64_id_above_int64(tmp):
    path = tmp / "big_ids.parquet"
    rows = blob_rows(30, 8)
    ids = pa.array([2**63 + 5 if i == 17 else i for i in range(30)], type=pa.uint64())
    embedding = pa.array([list(map(float, r)) for r in rows], type=pa.large_list(pa.float32()))
    pq.write_table(pa.table({"id": ids, "embedding": embedding}), path, row_group_size=10)
    return path, {}, "row 17"


def case_npy_uint64_id_above_int64(tmp):
    d = tmp / "cols"
    for sub in ("embedding", "id"):
        (d / sub).mkdir(parents=True)
    np.save(d / "embedding" / "part-0.npy", blob_rows(40, 8))
    ids = np.arange(40, dtype=np.uint64)
    ids[23] = 2**63 + 1
    np.save(d / "id" / "part-0.npy", ids)
    return d, {}, "row 23"


def case_k_too_large(tmp):
    path = tmp / "small.npy"
    np.save(path, blob_rows(12, 8))
    return path, {"knn": {"k": 12}}, "knn.k"


CATALOGUE = [
    case_missing_path, case_empty_directory, case_dims_differ_across_shards, case_ragged_rows,
    case_nan, case_inf, case_hdf5_1d, case_object_npy, case_truncated_parquet, case_string_column,
    case_missing_column, case_duplicate_ids, case_zero_vector, case_manifest_escape,
    case_manifest_lists_a_file_twice, case_npy_id_shard_missing, case_uint64_id_above_int64,
    case_npy_uint64_id_above_int64, case_k_too_large,
]


def assert_clean_failure(tmp_path, out, statuses, output, seconds, named):
    assert seconds < DEADLINE_S, f"took {seconds:.1f} s\n{output}"
    assert all(s == 2 for s in statuses.values()), f"statuses {statuses}\n{output}"
    assert named in output, f"the message does not name {named!r}:\n{output}"
    assert not (out / "results.h5").exists()
    assert not (out / "run.json").exists()


@pytest.mark.parametrize("n_ranks", [1, CATALOGUE_RANKS])
@pytest.mark.parametrize("case", CATALOGUE, ids=lambda c: c.__name__[5:])
def test_bad_input_is_exit_2_on_every_rank(tmp_path, case, n_ranks):
    data, sections, named = case(tmp_path)
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.toml", data, out, knn={"k": 4, **sections.get("knn", {})},
                          spectral={"n_eigs": 4})
    statuses, output, seconds = run_every_rank(tmp_path, n_ranks, "run", config)
    assert_clean_failure(tmp_path, out, statuses, output, seconds, named)


@pytest.fixture(scope="module")
def small_npy(tmp_path_factory):
    path = tmp_path_factory.mktemp("small") / "rows.npy"
    np.save(path, blob_rows(80, 8))
    return path


@pytest.mark.parametrize("override,named", [
    (["--set", "knn.colour=red"], "colour"),
    (["--set", "knn.metric=manhattan"], "knn.metric"),
    (["--set", "knn.k=-3"], "knn.k"),
    (["--set", "run.threads=30000"], "run.threads"),
    (["--set", "run.threads=1099511627776"], "run.threads"),
    (["--set", "fft.window=1099511627776"], "fft.window"),
])
def test_bad_config_is_exit_2_on_every_rank(tmp_path, small_npy, override, named):
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.toml", small_npy, out)
    statuses, output, seconds = run_every_rank(tmp_path, CATALOGUE_RANKS, "run", config, *override)
    assert_clean_failure(tmp_path, out, statuses, output, seconds, named)


def test_cuda_backend_without_a_usable_gpu_is_exit_2(tmp_path, small_npy):
    """knn.backend = "cuda" where no GPU is usable: exit 2 on every rank, naming CUDA (on a GPU
    machine the run succeeds instead)."""
    import ctypes.util

    if ctypes.util.find_library("cuda"):
        pytest.skip("a CUDA driver is present: the cuda backend may be usable here")
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.toml", small_npy, out, knn={"k": 4, "backend": "cuda"})
    statuses, output, seconds = run_every_rank(tmp_path, CATALOGUE_RANKS, "run", config)
    assert_clean_failure(tmp_path, out, statuses, output, seconds, "CUDA")


def test_unknown_key_in_the_file_is_exit_2(tmp_path, small_npy):
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.toml", small_npy, out, pagerank={"dampening": 0.5})
    statuses, output, seconds = run_every_rank(tmp_path, CATALOGUE_RANKS, "run", config)
    assert_clean_failure(tmp_path, out, statuses, output, seconds, "dampening")


def test_unwritable_output_dir_is_exit_2(tmp_path, small_npy):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    out = blocker / "out"
    config = write_config(tmp_path / "c.toml", small_npy, out)
    statuses, output, seconds = run_every_rank(tmp_path, CATALOGUE_RANKS, "run", config)
    assert seconds < DEADLINE_S
    assert all(s == 2 for s in statuses.values()), f"statuses {statuses}\n{output}"
    assert "output.dir" in output


def test_more_ranks_than_rows(tmp_path):
    path = tmp_path / "tiny.npy"
    np.save(path, blob_rows(3, 4))
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.toml", path, out, knn={"k": 1}, spectral={"n_eigs": 2})
    run_mpi(4, "run", config)
    with h5py.File(out / "results.h5") as f:
        assert f["knn/indices"].shape == (3, 1)
        assert f["pagerank/scores"][:].sum() == pytest.approx(1.0)


# ---- a dataset big enough that the kNN phase lasts a few seconds on 2 ranks ----

@pytest.fixture(scope="module")
def medium_blobs(tmp_path_factory):
    out = tmp_path_factory.mktemp("medium") / "blobs"
    # Large enough that the kNN ring runs for seconds even on an idle machine: the interrupt tests
    # signal it mid-ring. The noise drowns the clusters, so no kNN tile can be skipped.
    run_bin("generate", "--kind", "blobs", "--n", 24000, "--dim", 384, "--clusters", 12, "--noise", 40.0,
            "--seed", 3, "--format", "parquet", "--shards", 4, "--out", out, timeout=300)
    return out


def medium_config(tmp_path, data, out, **extra):
    return write_config(tmp_path / f"{out.name}.toml", data, out, run={"threads": 1},
                        knn={"k": 10}, spectral={"n_eigs": 8}, **extra)


def datasets(path):
    """Every dataset of an HDF5 file as numpy arrays (for bit-for-bit comparison)."""
    found = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return found


def start_run(n_ranks, config, *extra):
    cmd = ["mpirun", "--oversubscribe", "-n", str(n_ranks), str(BIN), "run", str(config), *extra]
    run_env = env()
    run_env["EMBSOLVE_LOG"] = "info"
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=run_env, start_new_session=True)


def rank_pids(proc, n_ranks, exact=True):
    """The PIDs of the embsolve ranks started by `proc` (they share its session)."""
    found = subprocess.run(["pgrep", "-s", str(proc.pid), "-f", f"^{BIN} run"], capture_output=True, text=True)
    pids = [int(p) for p in found.stdout.split()]
    assert len(pids) == n_ranks or not exact, found.stdout
    return pids


def kill_session(proc):
    """SIGKILL every process of the job at once, mpirun and its ranks, as a node failure or
    `scancel --signal=KILL` does. Killing only the ranks is not enough here: a rank killed while
    mpirun is still launching the other can leave mpirun waiting forever, which is mpirun's
    behaviour and not the one under test."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        found = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True)
        pids = [int(p) for p in found.stdout.split()]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # Reap mpirun, or it stays in the session as a zombie.
        if proc.poll() is not None and pids in ([], [proc.pid]):
            break
        assert time.monotonic() < deadline, f"the job's processes outlived SIGKILL: {pids}"
        time.sleep(0.05)
    proc.communicate()


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def uninterrupted(medium_blobs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    out = tmp / "reference"
    run_mpi(2, "run", medium_config(tmp, medium_blobs, out), timeout=600)
    return out


def test_sigterm_stops_every_rank_and_resume_is_bit_identical(tmp_path, medium_blobs, uninterrupted):
    out = tmp_path / "interrupted"
    config = medium_config(tmp_path, medium_blobs, out)
    proc = start_run(2, config)
    # Interrupt while the kNN ring runs: after the read, before the kNN checkpoint exists.
    marker = out / "checkpoint"
    wait_for(lambda: marker.exists() or proc.poll() is not None, 120, "the run to start")
    time.sleep(1.0)
    assert proc.poll() is None, "the run finished before it could be interrupted:\n" + proc.stdout.read()
    # As Slurm does on scancel, preemption or time limit: SIGTERM to every task.
    for pid in rank_pids(proc, 2):
        os.kill(pid, signal.SIGTERM)
    output, _ = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode != 0, output
    assert "interrupted" in output, output
    assert not (out / "results.h5").exists()
    assert not (out / "run.json").exists()

    resumed = run_mpi(2, "run", config, "--resume", timeout=600)
    assert (out / "results.h5").exists(), resumed.stderr
    expected = datasets(uninterrupted / "results.h5")
    actual = datasets(out / "results.h5")
    assert expected.keys() == actual.keys()
    for name, values in expected.items():
        assert np.array_equal(values, actual[name]), f"{name} differs after resume"


def test_resume_skips_finished_stages(tmp_path, medium_blobs, uninterrupted):
    out = tmp_path / "resume"
    config = medium_config(tmp_path, medium_blobs, out)
    run_mpi(2, "run", config, timeout=600)
    for partial in (out / "checkpoint").glob("spectral.*"):
        partial.unlink()
    # Four flipped payload bytes in one rank's PageRank slice: detected, and the stage recomputed.
    damaged = out / "checkpoint" / "pagerank.rank1-of-2.bin"
    data = bytearray(damaged.read_bytes())
    for i in range(len(data) - 40, len(data) - 36):
        data[i] ^= 0xFF
    damaged.write_bytes(bytes(data))
    (out / "results.h5").unlink()
    run_env = env()
    run_env["EMBSOLVE_LOG"] = "info"
    done = subprocess.run(["mpirun", "--oversubscribe", "-n", "2", str(BIN), "run", str(config), "--resume"],
                          capture_output=True, text=True, env=run_env, timeout=600)
    assert done.returncode == 0, done.stderr
    log = done.stdout + done.stderr
    assert "knn: resumed" in log, log
    assert "pagerank.rank1-of-2.bin is damaged (checksum mismatch)" in log, log
    assert "pagerank: resumed" not in log and "spectral: resumed" not in log, log
    expected = datasets(uninterrupted / "results.h5")
    actual = datasets(out / "results.h5")
    for name, values in expected.items():
        assert np.array_equal(values, actual[name]), f"{name} differs after resume"


def test_resume_with_another_config_is_exit_2(tmp_path, small_npy):
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.toml", small_npy, out, knn={"k": 4}, spectral={"n_eigs": 4})
    run_mpi(2, "run", config)
    statuses, output, seconds = run_every_rank(tmp_path, 2, "run", config, "--resume", "--set", "knn.k=5")
    assert all(s == 2 for s in statuses.values()), f"{statuses}\n{output}"
    assert "--resume" in output


def test_killed_rank_ends_the_job(tmp_path, medium_blobs):
    out = tmp_path / "killed"
    proc = start_run(3, medium_config(tmp_path, medium_blobs, out))
    wait_for(lambda: (out / "checkpoint").exists() or proc.poll() is not None, 120, "the run to start")
    time.sleep(1.0)
    os.kill(rank_pids(proc, 3)[1], signal.SIGKILL)
    start = time.monotonic()
    output, _ = proc.communicate(timeout=DEADLINE_S)
    assert time.monotonic() - start < DEADLINE_S
    assert proc.returncode != 0
    assert not (out / "results.h5").exists()


def test_kill_at_any_time_never_leaves_a_file_that_looks_complete(tmp_path, blobs_small):
    """SIGKILL the whole job at several moments; whenever results.h5 or run.json exists it is
    complete."""
    out = tmp_path / "atomic"
    config = write_config(tmp_path / "c.toml", blobs_small, out, knn={"k": 8}, spectral={"n_eigs": 8})
    # Kill at fractions of an uninterrupted run's wall time (launch included), so the moments
    # span the run, the write at its end and the time after, however fast the machine is.
    start = time.monotonic()
    run_mpi(2, "run", config)
    wall = time.monotonic() - start
    seen_complete = 0
    for delay in (0.15 * wall, 0.35 * wall, 0.55 * wall, 0.75 * wall, 0.9 * wall, 0.97 * wall, 1.5 * wall):
        for name in ("results.h5", "run.json"):
            (out / name).unlink(missing_ok=True)
        proc = start_run(2, config)
        time.sleep(delay)
        kill_session(proc)
        if (out / "results.h5").exists():
            names = datasets(out / "results.h5")
            assert {"knn/indices", "pagerank/scores", "spectral/labels", "ids"} <= names.keys()
            seen_complete += 1
        if (out / "run.json").exists():
            json.loads((out / "run.json").read_text())
    # The sweep is only meaningful if some kills landed before the end of the run.
    assert seen_complete < 7


# ---- determinism: ranks {1,2,3,4} x threads {1,2} ----

@pytest.fixture(scope="module")
def determinism_runs(blobs_small, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("determinism")
    runs = {}
    for n_ranks in (1, 2, 3, 4):
        for threads in (1, 2):
            out = tmp / f"r{n_ranks}t{threads}"
            config = write_config(tmp / f"r{n_ranks}t{threads}.toml", blobs_small, out,
                                  input={"label_column": "label"}, run={"threads": threads},
                                  knn={"k": 10}, spectral={"n_eigs": 10})
            run_mpi(n_ranks, "run", config, timeout=300)
            runs[(n_ranks, threads)] = datasets(out / "results.h5")
    return runs


def same_partition(a, b):
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_determinism_matrix(determinism_runs):
    reference = determinism_runs[(1, 1)]
    for key, run in determinism_runs.items():
        where = f"ranks={key[0]} threads={key[1]}"
        assert np.array_equal(run["knn/indices"], reference["knn/indices"]), where
        assert np.array_equal(run["knn/distances"], reference["knn/distances"]), where
        assert np.array_equal(run["components/labels"], reference["components/labels"]), where
        assert same_partition(run["spectral/labels"], reference["spectral/labels"]), where
        np.testing.assert_allclose(run["spectral/eigenvalues"], reference["spectral/eigenvalues"],
                                   rtol=1e-6, atol=1e-9, err_msg=where)
        np.testing.assert_allclose(run["pagerank/scores"], reference["pagerank/scores"],
                                   rtol=1e-6, atol=1e-12, err_msg=where)


def test_a_process_started_alone_runs_without_mpi_and_matches_a_singleton_mpi_run(tmp_path, blobs_small):
    """No launcher variables: one rank on SerialComm (no MPI start-up). EMBSOLVE_MPI=1 forces a
    singleton MPI run; both give the same bits."""
    results = {}
    for mode in ("", "1"):
        out = tmp_path / f"mpi{mode}"
        config = write_config(tmp_path / f"mpi{mode}.toml", blobs_small, out,
                              knn={"k": 6}, spectral={"n_eigs": 6, "n_clusters": 4})
        environment = {k: v for k, v in env().items()
                       if not k.startswith(("OMPI_COMM_WORLD", "PMIX_", "PMI_", "SLURM_"))}
        environment.update(EMBSOLVE_MPI=mode, EMBSOLVE_LOG="debug")
        done = subprocess.run([str(BIN), "run", str(config)], capture_output=True, text=True,
                              env=environment, timeout=120)
        assert done.returncode == 0, done.stderr
        expected = "one rank without MPI" if mode == "" else "MPI initialised: 1 ranks"
        assert expected in done.stderr, done.stderr
        with h5py.File(out / "results.h5") as f:
            results[mode] = {name: f[name][...] for name in
                             ("knn/indices", "knn/distances", "spectral/eigenvalues", "spectral/labels")}
    for name, values in results[""].items():
        assert np.array_equal(values, results["1"][name]), name
