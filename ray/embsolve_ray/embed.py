"""Stage 1: FASTA/FASTQ -> Ray Data -> k-mer embeddings (and token tracks) -> dataset directories."""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import __version__
from .dataset import write_dataset
from .fastx import plan_chunks
from .kmers import EmbedParams, InputError, embed_tokens, tokenize
from .labels import Labels, read_labels

# Dense float64 scratch per embedding batch stays below this.
BATCH_SCRATCH_BYTES = 64 << 20


@dataclass
class EmbedJob:
    inputs: list
    params: EmbedParams
    out: Path
    labels_path: str | None = None
    label_column: str | None = None
    tracks: Path | None = None
    skip_empty: bool = False
    rows_per_file: int = 100_000
    rows_per_group: int = 8192
    chunk_bytes: int = 32 << 20
    timings: dict = field(default_factory=dict)


def ensure_ray(num_cpus: int = 2, object_store_bytes: int = 512 << 20) -> None:
    """Start a local Ray (or join RAY_ADDRESS) once per process; workers can import this package."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    package_parent = str(Path(__file__).resolve().parent.parent)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_parent not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([package_parent, *paths])
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], **quiet)
    else:
        ray.init(num_cpus=num_cpus, object_store_memory=object_store_bytes, include_dashboard=False, **quiet)


def quiet_ray_data_console() -> None:
    """Keep Ray Data's INFO lines in its session log file, off the terminal."""
    for handler in logging.getLogger("ray.data").handlers:
        if "FileHandler" not in type(handler).__name__:
            handler.setLevel(logging.WARNING)


def sequence_arrays(table: pa.Table):
    """(bytes, offsets) of the `sequence` column: all letters concatenated, record r at
    bytes[offsets[r]:offsets[r + 1]]."""
    column = table.column("sequence").combine_chunks()
    n = len(column)
    buffers = column.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[column.offset : column.offset + n + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    data = data[offsets[0] : offsets[-1]]
    return data, offsets - offsets[0]


class RecordNames:
    """Names records in error messages: file, record number and id."""

    def __init__(self, paths, table: pa.Table):
        self.paths = paths
        self.table = table

    def __call__(self, row: int) -> str:
        file_index = self.table.column("file_index")[row].as_py()
        record = self.table.column("record")[row].as_py()
        seq_id = self.table.column("id")[row].as_py()
        return f"{self.paths[file_index]}: record {record} ({seq_id!r})"


def tokenize_table(table: pa.Table, paths, alphabet: str):
    data, offsets = sequence_arrays(table)
    return tokenize(data, offsets, alphabet, RecordNames(paths, table))


def make_embed_fn(paths, params: EmbedParams, labels: Labels | None, skip_empty: bool):
    def embed_batch(table: pa.Table) -> pa.Table:
        from ray.data._internal.tensor_extensions.arrow import ArrowTensorArray

        names = RecordNames(paths, table)
        tokens = tokenize_table(table, paths, params.alphabet)
        matrix, n_kmers = embed_tokens(tokens, params)
        keep = n_kmers > 0
        if not keep.all():
            if not skip_empty:
                row = int(np.flatnonzero(~keep)[0])
                raise InputError(
                    f"{names(row)}: no {params.k}-mer of {params.alphabet} letters "
                    f"(length {tokens.offsets[row + 1] - tokens.offsets[row]}); pass --skip-empty to leave such records out"
                )
            table = table.filter(pa.array(keep))
            matrix = matrix[keep]
        columns = {
            "id": table.column("id"),
            "embedding": ArrowTensorArray.from_numpy(matrix),
        }
        if labels is not None:
            codes = np.empty(table.num_rows, dtype=np.int64)
            for row, seq_id in enumerate(table.column("id").to_pylist()):
                code = labels.codes.get(seq_id)
                if code is None:
                    raise InputError(f"labels {labels.path}: no row for sequence {seq_id!r} ({names(row)})")
                codes[row] = code
            columns["label"] = pa.array(codes)
        columns["file_index"] = table.column("file_index")
        columns["record"] = table.column("record")
        return pa.table(columns)

    return embed_batch


def make_tracks_fn(paths, alphabet: str):
    def tracks_batch(table: pa.Table) -> pa.Table:
        from ray.data._internal.tensor_extensions.arrow import ArrowVariableShapedTensorArray

        tokens = tokenize_table(table, paths, alphabet)
        rows = [tokens.record(row) for row in range(tokens.n_records)]
        return pa.table({
            "id": table.column("id"),
            "tokens": ArrowVariableShapedTensorArray.from_numpy(rows),
            "file_index": table.column("file_index"),
            "record": table.column("record"),
        })

    return tracks_batch


def batch_rows(dim: int) -> int:
    """Records per block so that one block's float64 scratch stays near BATCH_SCRATCH_BYTES."""
    return int(max(16, min(8192, BATCH_SCRATCH_BYTES // (8 * dim))))


def run_embed(job: EmbedJob) -> dict:
    """Run stage 1; returns the embedding manifest."""
    from .dataset import check_output

    paths = [str(Path(path)) for path in job.inputs]
    if not paths:
        raise InputError("--input: no files given")
    check_output(Path(job.out).absolute())
    if job.tracks is not None:
        check_output(Path(job.tracks).absolute())
    labels = None
    if job.labels_path is not None or job.label_column is not None:
        if not (job.labels_path and job.label_column):
            raise InputError("--labels and --label-column go together")
        labels = read_labels(job.labels_path, job.label_column)
    started = time.perf_counter()
    params = job.params
    # Blocks of at most batch_rows records bound each task's dense matrix; Ray bundles blocks into
    # files of at least rows_per_file rows when writing.
    chunks = plan_chunks(paths, job.chunk_bytes)
    ensure_ray()
    import ray
    from ray.data import DataContext

    from .sequences import SequenceDatasource

    source = SequenceDatasource(chunks, block_records=batch_rows(params.dim))
    context = DataContext.get_current()
    context.execution_options.preserve_order = True
    context.raise_original_map_exception = True
    context.enable_progress_bars = sys.stderr.isatty()
    quiet_ray_data_console()
    job.timings["ray_start_s"] = time.perf_counter() - started

    producer = {
        "version": __version__,
        "alphabet": params.alphabet,
        "k": params.k,
        "method": params.method,
        "seed": params.seed,
        "canonical": params.canonical,
        "inputs": [os.path.abspath(path) for path in paths],
    }
    if labels is not None:
        producer["labels"] = labels.producer_section()
    if job.tracks is not None:
        producer["tracks"] = str(Path(job.tracks).absolute())

    started = time.perf_counter()
    embedded = ray.data.read_datasource(source).map_batches(
        make_embed_fn(paths, params, labels, job.skip_empty),
        batch_format="pyarrow",
        batch_size=None,
        zero_copy_batch=True,
    )
    manifest = write_dataset(
        embedded, Path(job.out), "embedding", params.dtype, params.dim, producer,
        label_column="label" if labels is not None else "",
        rows_per_file=job.rows_per_file, rows_per_group=job.rows_per_group,
    )
    job.timings["embed_s"] = time.perf_counter() - started

    if job.tracks is not None:
        started = time.perf_counter()
        tracks = ray.data.read_datasource(source).map_batches(
            make_tracks_fn(paths, params.alphabet), batch_format="pyarrow", batch_size=None, zero_copy_batch=True
        )
        track_producer = {
            "version": __version__,
            "alphabet": params.alphabet,
            "content": "tokens",
            "inputs": producer["inputs"],
        }
        write_dataset(tracks, Path(job.tracks), "tokens", "uint8", 0, track_producer,
                      rows_per_file=job.rows_per_file, rows_per_group=job.rows_per_group)
        job.timings["tracks_s"] = time.perf_counter() - started
    return manifest


def find_input_error(error: BaseException) -> InputError | None:
    """The InputError behind an exception that Ray may have wrapped (task errors, user code).
    Ray appends retry advice on further lines; input error messages are one line."""
    found = _find_input_error(error)
    return InputError(str(found).split("\n", 1)[0]) if found is not None else None


def _find_input_error(error: BaseException) -> InputError | None:
    seen = set()
    stack = [error]
    wrapped = None
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if type(current) is InputError:
            return current
        if isinstance(current, InputError) and wrapped is None:
            wrapped = current
        stack.extend([getattr(current, "cause", None), current.__cause__, current.__context__])
    return wrapped
