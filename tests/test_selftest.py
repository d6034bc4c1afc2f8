"""Every registered multi-rank check (`embsolve selftest`) at 1, 2, 3 and 4 ranks: each rank compares
its slice of kNN, graph, components, PageRank, Lanczos, k-means, ARI, FFT and the readers with the
serial whole-problem answer."""

import pytest

from conftest import run_mpi


@pytest.mark.parametrize("n_ranks", [1, 2, 3, 4])
def test_every_selftest_passes(n_ranks):
    done = run_mpi(n_ranks, "selftest", timeout=600, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "FAILED" not in output, output
    passed = [line for line in done.stdout.splitlines() if line.startswith("selftest ") and ": ok on" in line]
    assert len(passed) >= 10, output
