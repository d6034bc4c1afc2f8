"""`embsolve report`: a run's results become report.html with PNG plots, and the page loads in a
real headless Chromium with every image rendered."""

import re
import shutil
import subprocess

import pytest

from conftest import run_bin, run_mpi, write_config


@pytest.fixture(scope="module")
def finished_run(blobs_small, tmp_path_factory):
    work = tmp_path_factory.mktemp("report")
    cfg = write_config(work / "cfg.toml", blobs_small, work / "out", input={"label_column": "label"},
                       spectral={"n_eigs": 10})
    run_mpi(2, "run", cfg)
    return work / "out"


def test_report_writes_page_and_plots(finished_run):
    done = run_bin("report", finished_run)
    page = finished_run / "report.html"
    assert done.stdout.strip().endswith("report.html")
    html = page.read_text()
    images = re.findall(r'<img src="([^"]+\.png)"', html)
    assert len(images) >= 5, images
    for name in images:
        data = (finished_run / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
    for expected in ["eigenvalues.png", "cluster_sizes.png", "component_sizes.png", "pagerank.png",
                     "embedding.png", "phases.png"]:
        assert expected in images
    assert "n_clusters" in html and "phases.knn.max_s" in html
    assert not list(finished_run.glob("*.partial*"))


def test_report_renders_in_headless_chromium(finished_run, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is missing: scripts/deps.sh installs it"
    run_bin("report", finished_run)
    page = (finished_run / "report.html").resolve()
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files",
              "--virtual-time-budget=5000"]
    dom = subprocess.run(common + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr
    total = re.search(r'data-images-total="(\d+)"', dom.stdout)
    loaded = re.search(r'data-images-loaded="(\d+)"', dom.stdout)
    assert total and loaded, dom.stdout[:2000]
    assert int(total.group(1)) >= 5
    assert loaded.group(1) == total.group(1), f"{loaded.group(1)} of {total.group(1)} images rendered"
    shot = tmp_path / "page.png"
    subprocess.run(common + ["--window-size=1000,2000", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 20_000


def test_report_of_missing_directory_is_exit_2(tmp_path):
    done = run_bin("report", tmp_path / "nope", check=False)
    assert done.returncode == 2
    assert "run.json" in done.stderr
