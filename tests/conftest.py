"""Shared fixtures for the end-to-end tests: the embsolve binary, an mpirun runner and a small
blobs dataset. Tests run the real binary under real OpenMPI ranks."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("EMBSOLVE_BIN", ROOT / "target" / "release" / "embsolve"))

MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "EMBSOLVE_NO_PROGRESS": "1",
}


def env():
    merged = dict(os.environ)
    merged.update(MPI_ENV)
    return merged


def run_mpi(n_ranks, *args, timeout=120, cwd=None, check=True):
    """Run `mpirun -n n_ranks embsolve ARGS...`; returns the CompletedProcess."""
    cmd = ["mpirun", "--oversubscribe", "-n", str(n_ranks), str(BIN), *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env(), cwd=cwd)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}")
    return done


def run_bin(*args, timeout=120, check=True):
    """Run `embsolve ARGS...` without a launcher (a singleton)."""
    done = subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env())
    if check and done.returncode != 0:
        raise AssertionError(f"embsolve {' '.join(map(str, args))} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def write_config(path, input_path, output_dir, **sections):
    """Write a config TOML: `sections` maps section name -> dict of keys."""
    lines = ["[input]", f'path = "{input_path}"']
    for key, value in sections.pop("input", {}).items():
        lines.append(f"{key} = {toml_value(value)}")
    lines += ["[output]", f'dir = "{output_dir}"']
    for key, value in sections.pop("output", {}).items():
        lines.append(f"{key} = {toml_value(value)}")
    for name, keys in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in keys.items()]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


@pytest.fixture(scope="session")
def blobs_small(tmp_path_factory):
    """2,000 x 32 blobs, 8 clusters, Parquet in 3 shards (with id and label columns)."""
    out = tmp_path_factory.mktemp("blobs") / "small"
    run_bin("generate", "--kind", "blobs", "--n", 2000, "--dim", 32, "--clusters", 8, "--noise", 1.0,
            "--seed", 7, "--format", "parquet", "--shards", 3, "--out", out)
    return out
