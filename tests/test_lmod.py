"""`make install PREFIX=DIR` and the Lmod modulefile it writes, loaded by real Lmod from a
non-interactive shell with a clean environment."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, ROOT

LMOD_INIT = Path("/usr/share/lmod/lmod/init/bash")
VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)

pytestmark = pytest.mark.skipif(not LMOD_INIT.exists(),
                                reason="lmod is not installed (scripts/deps.sh installs it)")


def install(prefix, version=VERSION, extra_env=None):
    """scripts/install.sh, which `make install` runs, with the binary under test."""
    install_env = dict(os.environ, EMBSOLVE_BIN=str(BIN))
    install_env.pop("LOADEDMODULES", None)
    install_env.update(extra_env or {})
    done = subprocess.run([str(ROOT / "scripts" / "install.sh"), str(prefix), version],
                          capture_output=True, text=True, env=install_env, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return prefix / "modulefiles" / "embsolve" / f"{version}.lua"


def clean_shell(script, timeout=60):
    """Run a bash script the way a batch job would: non-interactive, no login, a minimal env."""
    minimal = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"),
               "LANG": "C.UTF-8"}
    done = subprocess.run(["bash", "--noprofile", "--norc", "-c",
                           f"set -euo pipefail\nsource {LMOD_INIT}\n{script}"],
                          capture_output=True, text=True, env=minimal, timeout=timeout)
    return done


def test_make_install_layout(tmp_path):
    """`make install PREFIX=DIR VERSION=V` through the Makefile itself."""
    prefix = tmp_path / "sw"
    done = subprocess.run(["make", "-s", "install", f"PREFIX={prefix}", "VERSION=9.8.7-test"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env=dict(os.environ, EMBSOLVE_BIN=str(BIN)))
    assert done.returncode == 0, done.stdout + done.stderr
    for path in ("bin/embsolve", "bin/embsolve-plot-scaling", "share/embsolve/slurm/embsolve.sbatch",
                 "share/embsolve/slurm/sweep.sbatch", "share/embsolve/slurm/scaling.sh",
                 "share/embsolve/slurm/local/cluster.sh"):
        assert os.access(prefix / path, os.X_OK), path
    assert (prefix / "share/doc/embsolve/cluster.md").is_file()
    modulefile = (prefix / "modulefiles/embsolve/9.8.7-test.lua").read_text()
    assert "@" not in modulefile.replace("@PREFIX@", "")  # every placeholder filled
    assert f'local prefix = "{prefix}"' in modulefile


def test_module_load_puts_the_installed_binary_on_path(tmp_path):
    prefix = tmp_path / "sw"
    install(prefix)
    done = clean_shell(f"""
module use {prefix}/modulefiles
command -v embsolve && echo "no embsolve expected before the load" && exit 9 || true
module load embsolve
echo "which=$(command -v embsolve)"
echo "home=$EMBSOLVE_HOME"
echo "scripts=$EMBSOLVE_SLURM_SCRIPTS"
embsolve --version
module unload embsolve
echo "after=$(command -v embsolve || echo none)"
""")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"which={prefix}/bin/embsolve\n" in out, out
    assert f"home={prefix}\n" in out and f"scripts={prefix}/share/embsolve/slurm\n" in out, out
    assert f"embsolve {VERSION}" in out, out
    assert "after=none" in out, out


def test_module_loads_the_site_mpi_and_hdf5_where_they_exist(tmp_path):
    prefix = tmp_path / "sw"
    install(prefix)
    site = tmp_path / "site"
    for name, version in (("openmpi", "4.1"), ("hdf5", "1.10")):
        (site / name).mkdir(parents=True)
        (site / name / f"{version}.lua").write_text(f'setenv("SITE_{name.upper()}_LOADED", "{version}")\n')
    done = clean_shell(f"""
module use {site}
module use {prefix}/modulefiles
module load embsolve/{VERSION}
echo "loaded=$LOADEDMODULES"
echo "mpi=${{SITE_OPENMPI_LOADED:-}} hdf5=${{SITE_HDF5_LOADED:-}}"
""")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "mpi=4.1 hdf5=1.10" in done.stdout, done.stdout
    loaded = re.search(r"loaded=(.*)", done.stdout).group(1).split(":")
    assert {"openmpi/4.1", "hdf5/1.10", f"embsolve/{VERSION}"} <= set(loaded), loaded


def test_module_pins_the_modules_loaded_at_install(tmp_path):
    """Installed from an environment with openmpi/4.1.5 loaded: the module loads that version,
    not the site default."""
    prefix = tmp_path / "sw"
    modulefile = install(prefix, extra_env={"LOADEDMODULES": "gcc/12:openmpi/4.1.5:hdf5/1.10.8"})
    text = modulefile.read_text()
    assert '{ "openmpi/4.1.5" }' in text and '{ "hdf5/1.10.8" }' in text and "gcc" not in text, text
    site = tmp_path / "site"
    (site / "openmpi").mkdir(parents=True)
    for version in ("4.1.5", "5.0.3"):
        (site / "openmpi" / f"{version}.lua").write_text(f'setenv("SITE_MPI", "{version}")\n')
    done = clean_shell(f"""
module use {site} {prefix}/modulefiles
module load embsolve
echo "mpi=$SITE_MPI"
""")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "mpi=4.1.5" in done.stdout, done.stdout


def test_install_rejects_a_bad_version(tmp_path):
    done = subprocess.run([str(ROOT / "scripts" / "install.sh"), str(tmp_path / "sw"), "1.0;rm"],
                          capture_output=True, text=True, env=dict(os.environ, EMBSOLVE_BIN=str(BIN)))
    assert done.returncode == 2 and "bad VERSION" in done.stderr, done.stderr
    assert not (tmp_path / "sw").exists()


@pytest.fixture(autouse=True)
def _needs_plotter():
    if not (BIN.parent / "embsolve-plot-scaling").exists():
        pytest.fail(f"{BIN.parent}/embsolve-plot-scaling is not built (cargo build --release)")
    if shutil.which("python3") is None:
        pytest.fail("python3 is needed by scripts/install.sh")


def test_module_sets_the_library_path_of_libraries_outside_the_system_paths(tmp_path):
    """A binary whose libmpi comes from a site directory (here: found through LD_LIBRARY_PATH at
    install time) gets that directory on LD_LIBRARY_PATH from the module, and nothing else."""
    ldd = subprocess.run(["ldd", str(BIN)], capture_output=True, text=True, check=True).stdout
    libmpi = re.search(r"(libmpi\.so\S*) => (\S+)", ldd)
    assert libmpi, ldd
    site_lib = tmp_path / "site-mpi" / "lib"
    site_lib.mkdir(parents=True)
    shutil.copy(libmpi.group(2), site_lib / libmpi.group(1))
    prefix = tmp_path / "sw"
    text = install(prefix, extra_env={"LD_LIBRARY_PATH": str(site_lib)}).read_text()
    assert text.count('prepend_path("LD_LIBRARY_PATH"') == 1, text
    done = clean_shell(f"""
module use {prefix}/modulefiles
module load embsolve
echo "ld=$LD_LIBRARY_PATH"
ldd "$(command -v embsolve)" | grep libmpi
embsolve --version
""")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ld={site_lib}\n" in done.stdout, done.stdout
    assert f"=> {site_lib}/{libmpi.group(1)}" in done.stdout, done.stdout
