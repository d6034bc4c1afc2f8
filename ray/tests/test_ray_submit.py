"""The Ray -> Slurm bridge: `python -m embsolve_ray submit` against executables named sbatch,
squeue and scontrol placed first on PATH (they record their argv and answer like Slurm), and
against the real local Slurm of slurm/local/cluster.sh when the checkout has it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_PARENT = ROOT / "ray"
BIN = Path(os.environ.get("EMBSOLVE_BIN", ROOT / "target" / "release" / "embsolve"))

FAKE_SBATCH = """#!/usr/bin/env python3
import os, sys
with open(os.path.join(os.environ["FAKE_SLURM_DIR"], "sbatch.argv"), "w") as out:
    out.write("\\0".join(sys.argv))
rc = int(os.environ.get("FAKE_SBATCH_RC", "0"))
if rc:
    sys.stderr.write("sbatch: error: Batch job submission failed: Invalid partition name specified\\n")
    sys.exit(rc)
print(os.environ.get("FAKE_JOB_ID", "4242") + ";localcluster")
"""

FAKE_SQUEUE = """#!/usr/bin/env python3
import os, sys
path = os.path.join(os.environ["FAKE_SLURM_DIR"], "squeue.calls")
calls = int(open(path).read()) if os.path.exists(path) else 0
open(path, "w").write(str(calls + 1))
assert sys.argv[1:] == ["-h", "-j", os.environ.get("FAKE_JOB_ID", "4242"), "-o", "%T"], sys.argv
states = os.environ.get("FAKE_QUEUE_STATES", "PENDING,RUNNING").split(",")
if calls < len(states):
    print(states[calls])
"""

FAKE_SCONTROL = """#!/usr/bin/env python3
import os, sys
assert sys.argv[1:] == ["-o", "show", "job", os.environ.get("FAKE_JOB_ID", "4242")], sys.argv
state = os.environ.get("FAKE_FINAL_STATE", "COMPLETED")
print(f"JobId={sys.argv[-1]} JobName=embsolve JobState={state} Reason=None ExitCode={'0:0' if state == 'COMPLETED' else '2:0'}")
"""


@pytest.fixture
def fake_slurm(tmp_path):
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("squeue", FAKE_SQUEUE), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def make_dataset(directory, label_column="label"):
    directory.mkdir(parents=True)
    (directory / "manifest.json").write_text(json.dumps({
        "format": "parquet", "column": "embedding", "id_column": "id", "label_column": label_column, "dim": 4,
        "dtype": "float32", "n_rows": 0, "files": [], "producer": {"tool": "embsolve-ray"}}))
    return directory


def run_submit(tmp_path, fake_bin, *args, **env_extra):
    script = tmp_path / "embsolve.sbatch"
    script.write_text("#!/bin/bash\n")
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_PARENT), FAKE_SLURM_DIR=str(tmp_path), EMBSOLVE_SBATCH=str(script),
               PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}", **env_extra)
    return subprocess.run([sys.executable, "-m", "embsolve_ray", "submit", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=120)


def recorded_argv(tmp_path):
    path = tmp_path / "sbatch.argv"
    return path.read_text().split("\0") if path.exists() else None


def test_argv_is_a_list_with_dataset_and_labels(tmp_path, fake_slurm):
    # Spaces and quotes in paths would break a shell string; an argument list passes them through.
    dataset = make_dataset(tmp_path / "my data 'x'")
    config = tmp_path / "cfg dir" / "run.toml"
    config.parent.mkdir()
    config.write_text('[output]\ndir = "results/x"\n')
    done = run_submit(tmp_path, fake_slurm, "--dataset", dataset, "--config", config,
                      "--sbatch-arg", "--ntasks=2", "--sbatch-arg=-c1", "--sbatch-arg", "--job-name=a b")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "4242\n"
    argv = recorded_argv(tmp_path)
    assert argv[1:] == [
        "--parsable", "--ntasks=2", "-c1", "--job-name=a b", str(tmp_path / "embsolve.sbatch"),
        str(config), "--set", f"input.path={json.dumps(str(dataset))}", "--set", 'input.label_column="label"',
    ]
    assert Path(argv[0]).name == "sbatch"


def test_default_script_is_the_checkouts(monkeypatch):
    from embsolve_ray.submit import default_script

    monkeypatch.delenv("EMBSOLVE_SBATCH", raising=False)
    assert default_script() == ROOT / "slurm" / "embsolve.sbatch"


def test_config_label_column_and_unlabelled_dataset_add_nothing(tmp_path, fake_slurm):
    config = tmp_path / "run.toml"
    config.write_text('[input]\nlabel_column = "family"\n')
    labelled = make_dataset(tmp_path / "a")
    assert run_submit(tmp_path, fake_slurm, "--dataset", labelled, "--config", config).returncode == 0
    assert recorded_argv(tmp_path)[-2:] == ["--set", f"input.path={json.dumps(str(labelled))}"]
    plain = make_dataset(tmp_path / "b", label_column="")
    config.write_text("")
    assert run_submit(tmp_path, fake_slurm, "--dataset", plain, "--config", config).returncode == 0
    assert recorded_argv(tmp_path)[-2:] == ["--set", f"input.path={json.dumps(str(plain))}"]


@pytest.mark.parametrize("case,needle", [
    ("no-manifest", "no manifest.json"),
    ("no-config", "no such file"),
    ("bad-config", "--config"),
])
def test_refuses_incomplete_dataset_or_bad_config(tmp_path, fake_slurm, case, needle):
    dataset = tmp_path / "d"
    if case == "no-manifest":
        dataset.mkdir()
        (dataset / "part-00000.parquet").write_bytes(b"")
    else:
        make_dataset(dataset)
    config = tmp_path / "run.toml"
    if case != "no-config":
        config.write_text("[input\n" if case == "bad-config" else "")
    done = run_submit(tmp_path, fake_slurm, "--dataset", dataset, "--config", config)
    assert done.returncode == 2 and needle in done.stderr, done.stderr
    assert recorded_argv(tmp_path) is None  # sbatch never ran


def test_sbatch_failure_is_reported(tmp_path, fake_slurm):
    config = tmp_path / "run.toml"
    config.write_text("")
    done = run_submit(tmp_path, fake_slurm, "--dataset", make_dataset(tmp_path / "d"), "--config", config,
                      FAKE_SBATCH_RC="1")
    assert done.returncode == 1 and "Invalid partition name" in done.stderr and done.stdout == ""


@pytest.mark.parametrize("final,status", [("COMPLETED", 0), ("FAILED", 1)])
def test_wait_polls_until_the_job_ends(tmp_path, fake_slurm, final, status):
    config = tmp_path / "run.toml"
    config.write_text("")
    done = run_submit(tmp_path, fake_slurm, "--dataset", make_dataset(tmp_path / "d"), "--config", config, "--wait",
                      FAKE_JOB_ID="77", FAKE_FINAL_STATE=final)
    assert done.returncode == status, done.stderr
    assert done.stdout == "77\n"
    assert int((tmp_path / "squeue.calls").read_text()) == 3  # PENDING, RUNNING, then gone
    assert "job 77: PENDING" in done.stderr and "job 77: RUNNING" in done.stderr
    assert json.loads(done.stderr.strip().splitlines()[-1])["state"] == final


CLUSTER = ROOT / "slurm" / "local" / "cluster.sh"


@pytest.mark.skipif(not CLUSTER.exists() or not (ROOT / "slurm" / "embsolve.sbatch").exists()
                    or shutil.which("slurmctld") is None, reason="no local Slurm in this checkout")
def test_real_local_slurm(tmp_path):
    started_here = subprocess.run([str(CLUSTER), "status"], capture_output=True).returncode != 0
    if started_here:
        subprocess.run([str(CLUSTER), "start"], check=True, capture_output=True, timeout=120)
    try:
        env_lines = subprocess.run([str(CLUSTER), "env"], check=True, capture_output=True, text=True).stdout
        env = dict(os.environ, PYTHONPATH=str(PACKAGE_PARENT), EMBSOLVE_BIN=str(BIN))
        for line in env_lines.splitlines():
            if line.startswith("export ") and "=" in line:
                key, value = line[len("export "):].split("=", 1)
                env[key] = value.strip("'\"")
        dataset = make_dataset(tmp_path / "d", label_column="")
        config = tmp_path / "run.toml"
        config.write_text(f'[output]\ndir = "{tmp_path / "res"}"\n')
        log = tmp_path / "job.out"
        done = subprocess.run(
            [sys.executable, "-m", "embsolve_ray", "submit", "--dataset", str(dataset), "--config", str(config),
             "--sbatch-arg", f"--output={log}", "--sbatch-arg", f"--chdir={tmp_path}", "--wait", "--timeout", "120"],
            capture_output=True, text=True, env=env, timeout=180)
        job_id = done.stdout.strip()
        assert job_id.isdigit(), done.stderr
        # The job ran the binary on the dataset given as a TOML string. The dataset has no rows, so
        # embsolve refuses it (exit 2) and the job ends FAILED: the bridge reports that as status 1.
        text = log.read_text()
        assert f"input.path={json.dumps(str(dataset))}" in text, text
        state = json.loads(done.stderr.strip().splitlines()[-1])["state"]
        assert state == "FAILED" and done.returncode == 1, done.stderr
    finally:
        if started_here:
            subprocess.run([str(CLUSTER), "stop"], capture_output=True, timeout=120)
