"""FASTA/FASTQ files (plain or gzip): checking, cutting into chunks at record boundaries, parsing.

Rows: `id` (the header up to the first space), `sequence` (the letters, line breaks removed),
`file_index` (position of the file on the command line) and `record` (0-based index of the record
in its file). The dataset order is (file_index, record): the input order.

A plain file is cut at record boundaries into chunks of about `chunk_bytes` (one Ray read task
each); a gzip file cannot be entered in the middle, so it is one chunk, streamed.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .kmers import InputError

FASTA = "fasta"
FASTQ = "fastq"
# Bytes scanned at a time while locating records in a plain file.
SCAN_BYTES = 64 << 20
# Sequence bytes per output block.
BLOCK_BYTES = 8 << 20
GZIP_MAGIC = b"\x1f\x8b"

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("sequence", pa.large_binary()),
        ("file_index", pa.int32()),
        ("record", pa.int64()),
    ]
)


def is_gzip(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def open_text(path: str):
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def detect_format(path: str) -> str:
    """FASTA or FASTQ from the first non-blank byte; a clear error for anything else."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    try:
        with open_text(path) as handle:
            head = handle.read(1 << 16)
    except (OSError, EOFError) as err:
        raise InputError(f"{path}: cannot read: {err}") from err
    text = head.lstrip()
    if not text:
        raise InputError(f"{path}: empty file (no sequence records)")
    if text[:1] == b">":
        return FASTA
    if text[:1] == b"@" and text == head:
        return FASTQ
    if text[:1] == b"@":
        raise InputError(f"{path}: blank lines before the first FASTQ record")
    line = head[: len(head) - len(text)].count(b"\n") + 1
    raise InputError(
        f"{path}: line {line} does not start a record with '>' (FASTA) or '@' (FASTQ): "
        "sequence with no header, or not a FASTA/FASTQ file"
    )


def record_starts(path: str, fmt: str) -> np.ndarray:
    """Byte offsets of every record of a plain file (for FASTA a '>' at a line start, for FASTQ
    every fourth line start)."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    size = len(data)
    found = []
    line_count = 0
    for begin in range(0, size, SCAN_BYTES):
        end = min(size, begin + SCAN_BYTES)
        part = data[begin:end]
        if fmt == FASTA:
            previous = data[begin - 1 : end - 1] if begin else np.concatenate(([10], data[: end - 1]))
            found.append((np.flatnonzero((part == 62) & (previous == 10)) + begin).astype(np.int64))
        else:
            line_starts = np.flatnonzero(part == 10) + begin + 1
            if begin == 0:
                line_starts = np.concatenate(([0], line_starts))
            # Line starts whose 0-based line number is a multiple of 4.
            skip = (-line_count) % 4
            found.append(line_starts[skip::4].astype(np.int64))
            line_count += len(line_starts)
    starts = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
    starts = starts[starts < size]
    # Blank lines at the end of a FASTQ file are no record.
    while fmt == FASTQ and len(starts) and not bytes(data[starts[-1] :]).strip():
        starts = starts[:-1]
    return starts


@dataclass(frozen=True)
class Chunk:
    """Records [first_record, first_record + n_records) of a file, bytes [start, end)."""

    path: str
    file_index: int
    fmt: str
    gzip: bool
    start: int
    end: int
    first_record: int
    n_records: int | None  # unknown for gzip


def plan_chunks(paths, chunk_bytes: int) -> list[Chunk]:
    """Check every input file and cut it into read chunks at record boundaries."""
    chunks = []
    for file_index, path in enumerate(paths):
        fmt = detect_format(path)
        size = os.path.getsize(path)
        if is_gzip(path):
            chunks.append(Chunk(path, file_index, fmt, True, 0, size, 0, None))
            continue
        starts = record_starts(path, fmt)
        if len(starts) == 0:
            raise InputError(f"{path}: no sequence records")
        bounds = [0]
        next_cut = starts[0] + chunk_bytes
        for index in np.searchsorted(starts, np.arange(next_cut, size, chunk_bytes)):
            if index > bounds[-1] and index < len(starts):
                bounds.append(int(index))
        bounds.append(len(starts))
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            begin = 0 if lo == 0 else int(starts[lo])
            end = size if hi == len(starts) else int(starts[hi])
            chunks.append(Chunk(path, file_index, fmt, False, begin, end, lo, hi - lo))
    return chunks


def parse_fasta(text: bytes, chunk: Chunk, first_record: int):
    """Records of a FASTA text that starts at a record (or with blank lines before it)."""
    body = text.lstrip()
    if not body:
        return [], []
    if body[:1] != b">":
        raise InputError(f"{chunk.path}: record {first_record}: sequence with no header")
    ids, seqs = [], []
    for offset, part in enumerate(body[1:].split(b"\n>")):
        header, _, letters = part.partition(b"\n")
        name = header.split(None, 1)[0] if header.strip() else b""
        if not name:
            raise InputError(f"{chunk.path}: record {first_record + offset}: header line '>' has no id")
        ids.append(name.decode("utf-8", "replace"))
        seqs.append(b"".join(letters.split()))
    return ids, seqs


def parse_fastq(text: bytes, chunk: Chunk, first_record: int):
    """Records of a 4-line FASTQ text that starts at a record."""
    text = text.rstrip()
    if not text:
        return [], []
    lines = [line.rstrip(b"\r") for line in text.split(b"\n")]
    if len(lines) % 4:
        raise InputError(
            f"{chunk.path}: record {first_record + len(lines) // 4}: truncated FASTQ record "
            "(expected 4 lines: @id, sequence, +, quality)"
        )
    ids, seqs = [], []
    for index in range(0, len(lines), 4):
        header, letters, plus, quality = lines[index : index + 4]
        number = first_record + index // 4
        if header[:1] != b"@" or plus[:1] != b"+":
            raise InputError(
                f"{chunk.path}: record {number}: malformed FASTQ (expected '@id', sequence, '+', quality lines)"
            )
        if len(letters) != len(quality):
            raise InputError(f"{chunk.path}: record {number}: sequence and quality lengths differ")
        name = header[1:].split(None, 1)[0] if header[1:].strip() else b""
        if not name:
            raise InputError(f"{chunk.path}: record {number}: header line '@' has no id")
        ids.append(name.decode("utf-8", "replace"))
        seqs.append(letters.strip())
    return ids, seqs


def to_block(ids, seqs, file_index: int, first_record: int) -> pa.Table:
    n = len(ids)
    return pa.Table.from_arrays(
        [
            pa.array(ids, type=pa.string()),
            pa.array(seqs, type=pa.large_binary()),
            pa.array(np.full(n, file_index, dtype=np.int32)),
            pa.array(np.arange(first_record, first_record + n, dtype=np.int64)),
        ],
        schema=SCHEMA,
    )


def split_complete(buffer: bytes, fmt: str, final: bool):
    """(complete records, remainder) of a streamed buffer."""
    if final:
        return buffer, b""
    if fmt == FASTA:
        cut = buffer.rfind(b"\n>")
        return (buffer[: cut + 1], buffer[cut + 1 :]) if cut >= 0 else (b"", buffer)
    newlines = np.flatnonzero(np.frombuffer(buffer, dtype=np.uint8) == 10)
    complete_lines = len(newlines) // 4 * 4
    if complete_lines == 0:
        return b"", buffer
    cut = int(newlines[complete_lines - 1]) + 1
    return buffer[:cut], buffer[cut:]


def read_chunk(chunk: Chunk, block_bytes: int = BLOCK_BYTES, block_records: int = 1 << 30):
    """Blocks of the records of one chunk: about block_bytes, at most block_records each."""
    parse = parse_fasta if chunk.fmt == FASTA else parse_fastq
    next_record = chunk.first_record
    if chunk.gzip:
        pieces = stream_gzip(chunk, block_bytes)
    else:
        with open(chunk.path, "rb") as handle:
            handle.seek(chunk.start)
            text = handle.read(chunk.end - chunk.start)
        pieces = iter_pieces(text, chunk.fmt, block_bytes)
    for text in pieces:
        ids, seqs = parse(text, chunk, next_record)
        for begin in range(0, len(ids), block_records):
            end = begin + block_records
            yield to_block(ids[begin:end], seqs[begin:end], chunk.file_index, next_record + begin)
        next_record += len(ids)
    if chunk.n_records is not None and next_record - chunk.first_record != chunk.n_records:
        raise InputError(
            f"{chunk.path}: expected {chunk.n_records} records in bytes {chunk.start}..{chunk.end}, "
            f"parsed {next_record - chunk.first_record} (file changed while reading?)"
        )


def next_boundary(text: bytes, fmt: str, start: int, pos: int) -> int:
    """The first record start at or after `pos` in `text`, whose record `start` begins; -1 if none."""
    if fmt == FASTA:
        found = text.find(b"\n>", pos - 1)
        return found + 1 if found >= 0 else -1
    line = text.count(b"\n", start, pos)
    cursor = pos
    while True:
        found = text.find(b"\n", cursor)
        if found < 0:
            return -1
        line += 1
        cursor = found + 1
        if line % 4 == 0:
            return cursor if cursor < len(text) else -1


def iter_pieces(text: bytes, fmt: str, block_bytes: int):
    """Cut an in-memory chunk into pieces of about block_bytes, each of whole records."""
    start = 0
    while len(text) - start > block_bytes:
        cut = next_boundary(text, fmt, start, start + block_bytes)
        if cut < 0:
            break
        yield text[start:cut]
        start = cut
    yield text[start:]


def stream_gzip(chunk: Chunk, block_bytes: int):
    buffer = b""
    try:
        with gzip.open(chunk.path, "rb") as handle:
            while True:
                data = handle.read(block_bytes)
                buffer += data
                head, buffer = split_complete(buffer, chunk.fmt, final=not data)
                if head:
                    yield head
                if not data:
                    return
    except (OSError, EOFError) as err:
        raise InputError(f"{chunk.path}: cannot decompress: {err}") from err
