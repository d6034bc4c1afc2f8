"""Every registered multi-rank check (`examples/multirank`) at 1, 2, 3, 4, 5 and 7 ranks, each
(check, ranks) its own case: every rank compares its slice of kNN, graph, components, PageRank,
Lanczos, k-means, ARI, FFT and the readers with the serial whole-problem answer. The example runs
once per rank count; the check names come from `multirank --list` at collection time. Plus the
mixed-status failure agreement (`--agree-exit`): an internal error on rank 0 and an input error on
rank 1 make every rank exit 2, and only the input error is printed, once."""

import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, env

MULTIRANK = Path(os.environ.get("EMBSOLVE_MULTIRANK_BIN", ROOT / "target" / "release" / "examples" / "multirank"))
RANK_COUNTS = [1, 2, 3, 4, 5, 7]
INPUT_MESSAGE = "bad row 7 in shard part-001.parquet"
INTERNAL_MESSAGE = "internal failure on rank 0"


def list_checks():
    """The registered check names, or None and why they could not be listed."""
    try:
        done = subprocess.run([str(MULTIRANK), "--list"], capture_output=True, text=True, timeout=60, env=env())
    except OSError as error:
        return None, f"{MULTIRANK}: {error} (build it with `make build`)"
    if done.returncode != 0 or not done.stdout.split():
        return None, f"{MULTIRANK} --list exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout.split(), None


CHECKS, LIST_ERROR = list_checks()

_RUNS = {}


def mpirun(n_ranks, *args, timeout=600):
    cmd = ["mpirun", "--oversubscribe", "-n", str(n_ranks), str(MULTIRANK), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env())


def every_check(n_ranks):
    """The one run of every check at `n_ranks` ranks (cached for the module)."""
    if n_ranks not in _RUNS:
        _RUNS[n_ranks] = mpirun(n_ranks)
    return _RUNS[n_ranks]


def output_of(done):
    return f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"


@pytest.mark.parametrize("check", CHECKS or ["<unlisted>"])
@pytest.mark.parametrize("n_ranks", RANK_COUNTS)
def test_check_passes(n_ranks, check):
    assert CHECKS is not None, LIST_ERROR
    done = every_check(n_ranks)
    failed = [line for line in done.stderr.splitlines() if line.startswith(f"multirank {check}: FAILED")]
    assert not failed, "\n".join(failed)
    assert f"multirank {check}: ok on {n_ranks} ranks" in done.stdout.splitlines(), output_of(done)


@pytest.mark.parametrize("n_ranks", RANK_COUNTS)
def test_every_check_ran_and_the_job_exited_cleanly(n_ranks):
    assert CHECKS is not None, LIST_ERROR
    done = every_check(n_ranks)
    assert done.returncode == 0, output_of(done)
    lines = [line for line in done.stdout.splitlines() if line.startswith("multirank ")]
    assert lines == [f"multirank {check}: ok on {n_ranks} ranks" for check in CHECKS], output_of(done)


@pytest.mark.parametrize("n_ranks", [2, 3])
def test_mixed_failures_agree_on_the_input_error(n_ranks):
    done = mpirun(n_ranks, "--agree-exit", timeout=120)
    assert done.returncode == 2, output_of(done)
    assert f"multirank agree-exit: statuses {[2] * n_ranks}" in done.stdout.splitlines(), output_of(done)
    assert done.stderr.count(INPUT_MESSAGE) == 1, output_of(done)
    assert f"embsolve: input error: rank 1: {INPUT_MESSAGE}" in done.stderr.splitlines(), output_of(done)
    assert INTERNAL_MESSAGE not in done.stderr + done.stdout, output_of(done)
