"""The Ray -> Slurm bridge: submit `slurm/embsolve.sbatch` on a finished dataset with
`sbatch --parsable` (an argument list, never a shell string), and optionally wait for the job.

The job runs `embsolve run CONFIG.toml --set input.path="DATASET"`; when the dataset carries labels
and the config names no label column, `--set input.label_column="label"` is added so the run
reports the adjusted Rand index.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from .dataset import read_manifest
from .kmers import InputError

# States after which a job never runs again (squeue and scontrol spelling).
TERMINAL_STATES = {
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
    "PREEMPTED", "TIMEOUT", "SPECIAL_EXIT",
}


def default_script() -> Path:
    """slurm/embsolve.sbatch of this checkout, or $EMBSOLVE_SBATCH."""
    if os.environ.get("EMBSOLVE_SBATCH"):
        return Path(os.environ["EMBSOLVE_SBATCH"])
    return Path(__file__).resolve().parents[2] / "slurm" / "embsolve.sbatch"


def toml_string(value: str) -> str:
    """A TOML basic string (JSON string escapes are valid TOML ones)."""
    return json.dumps(value, ensure_ascii=False)


def build_argv(dataset: Path, config: Path, sbatch_args=(), script: Path | None = None) -> list:
    """The sbatch argument list for a dataset and config; checks both first."""
    dataset = Path(dataset).absolute()
    config = Path(config).absolute()
    manifest = read_manifest(dataset)
    try:
        table = tomllib.loads(config.read_text())
    except FileNotFoundError as err:
        raise InputError(f"--config {config}: no such file") from err
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise InputError(f"--config {config}: {err}") from err
    script = Path(script) if script is not None else default_script()
    if not script.is_file():
        raise InputError(f"sbatch script {script} not found (set EMBSOLVE_SBATCH or pass --script)")
    run_args = ["--set", f"input.path={toml_string(str(dataset))}"]
    input_section = table.get("input", {}) if isinstance(table.get("input", {}), dict) else {}
    if manifest.get("label_column") and not input_section.get("label_column"):
        run_args += ["--set", f"input.label_column={toml_string(manifest['label_column'])}"]
    return ["sbatch", "--parsable", *sbatch_args, str(script), str(config), *run_args]


def parse_job_id(stdout: str) -> str:
    """`sbatch --parsable` prints `JOBID` or `JOBID;CLUSTER`."""
    line = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    job_id = line.split(";", 1)[0].strip()
    if not job_id.isdigit():
        raise RuntimeError(f"sbatch --parsable printed {stdout.strip()!r}, not a job id")
    return job_id


def submit(argv: list) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError as err:
        raise RuntimeError("sbatch not found on PATH (is Slurm installed? eval \"$(slurm/local/cluster.sh env)\")") from err
    if done.returncode != 0:
        raise RuntimeError(f"sbatch exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return parse_job_id(done.stdout)


def job_state(job_id: str):
    """(state, exit_code) from squeue while queued or running, else from scontrol; (None, None)
    when Slurm no longer knows the job."""
    queued = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    state = queued.stdout.strip().split("\n")[0].strip() if queued.returncode == 0 else ""
    if state and state not in TERMINAL_STATES:
        return state, None
    shown = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True)
    if shown.returncode != 0:
        return (state or None), None
    fields = dict(item.split("=", 1) for item in shown.stdout.split() if "=" in item)
    return fields.get("JobState", state or None), fields.get("ExitCode")


def wait_for(job_id: str, timeout_s: float | None = None, poll_s: float = 0.5) -> tuple:
    """Poll until the job reaches a terminal state; returns (state, exit_code)."""
    started = time.monotonic()
    interval = poll_s
    last = None
    while True:
        state, exit_code = job_state(job_id)
        if state != last and state is not None:
            print(f"job {job_id}: {state}", file=sys.stderr)
            last = state
        if state is None or state in TERMINAL_STATES:
            return state, exit_code
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise TimeoutError(f"job {job_id} still {state} after {timeout_s:.0f} s")
        time.sleep(interval)
        interval = min(interval * 1.5, 5.0)
