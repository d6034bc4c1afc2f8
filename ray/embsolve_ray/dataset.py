"""Writing a dataset directory: Parquet shards by Ray's `write_parquet`, then `manifest.json`.

The shards are written into a hidden staging directory beside the target. Their row order is
checked from the (file_index, record) columns, they are renamed `part-NNNNN.parquet` in row order,
the manifest is written last (to a temporary name, then renamed), and only then does the staging
directory take the target's name. A directory with a manifest is therefore a complete dataset; a
crashed run leaves at most a `.NAME.partial-*` directory.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from .kmers import InputError

MANIFEST = "manifest.json"
TOOL = "embsolve-ray"
ORDER_COLUMNS = ("file_index", "record")


def check_output(out: Path) -> None:
    """Refuse to replace a non-empty directory that is not a dataset written by this tool."""
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")
    if not any(out.iterdir()):
        return
    manifest = out / MANIFEST
    try:
        producer = json.loads(manifest.read_text()).get("producer", {})
    except (OSError, ValueError, AttributeError):
        producer = {}
    if producer.get("tool") != TOOL:
        raise InputError(f"--out {out}: a non-empty directory that is not an {TOOL} dataset; not replacing it")


def staging_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:12]}"


class Shard:
    """One written file with its (file_index, record) keys."""

    def __init__(self, path: Path):
        self.path = path
        table = pq.read_table(path, columns=list(ORDER_COLUMNS))
        self.rows = table.num_rows
        keys = [table.column(name).to_numpy().astype(np.int64) for name in ORDER_COLUMNS]
        self.keys = keys[0] * (1 << 40) + keys[1]

    def first(self) -> int:
        return int(self.keys[0])


def ordered_shards(staging: Path) -> list:
    """The written files in row order; an error if rows are out of order within or across files."""
    shards = [Shard(path) for path in sorted(staging.glob("*.parquet"))]
    shards = [shard for shard in shards if shard.rows > 0]
    shards.sort(key=Shard.first)
    previous = -1
    for shard in shards:
        if np.any(np.diff(shard.keys) <= 0) or shard.first() <= previous:
            raise RuntimeError(f"{shard.path.name}: rows are not in input order after write_parquet")
        previous = int(shard.keys[-1])
    return shards


def write_dataset(ds, out: Path, column: str, dtype: str, dim: int, producer: dict,
                  label_column: str = "", rows_per_file: int = 100_000, rows_per_group: int = 8192) -> dict:
    """Write `ds` (with columns id, `column`, file_index, record) as a dataset directory at `out`;
    returns the manifest."""
    out = Path(out).absolute()
    check_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(out)
    try:
        ds.write_parquet(
            str(staging),
            min_rows_per_file=rows_per_file,
            row_group_size=rows_per_group,
            compression="zstd",
            use_dictionary=False,
        )
        shards = ordered_shards(staging)
        if not shards:
            raise InputError("no sequence records to write")
        files = []
        for index, shard in enumerate(shards):
            name = f"part-{index:05d}.parquet"
            shard.path.rename(staging / name)
            files.append({"path": name, "rows": shard.rows})
        manifest = {
            "format": "parquet",
            "column": column,
            "id_column": "id",
            "label_column": label_column,
            "dim": dim,
            "dtype": dtype,
            "n_rows": sum(entry["rows"] for entry in files),
            "files": files,
            "producer": {"tool": TOOL, **producer},
        }
        temporary = staging / f".{MANIFEST}.tmp"
        temporary.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(temporary, staging / MANIFEST)
        replace_dir(staging, out)
        return manifest
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def replace_dir(staging: Path, out: Path) -> None:
    """Move the finished staging directory to `out`, replacing an older dataset there."""
    check_output(out)
    if out.exists():
        retired = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:12]}"
        out.rename(retired)
        staging.rename(out)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(out)


def read_manifest(directory: Path) -> dict:
    path = Path(directory) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise InputError(f"{directory}: no {MANIFEST} (not a complete dataset)") from err
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: unreadable manifest: {err}") from err
