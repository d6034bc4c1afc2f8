"""FASTA/FASTQ reading: chunks cut at record boundaries, gzip streaming, clear errors."""

import gzip
import random

import pytest

from embsolve_ray.kmers import InputError
from embsolve_ray.fastx import plan_chunks, read_chunk


def write_fasta(path, records, width=13, compress=False):
    text = "".join(f">{name} some description\n" + "".join(seq[i:i + width] + "\n" for i in range(0, len(seq), width))
                   for name, seq in records)
    if compress:
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def write_fastq(path, records, compress=False):
    # Quality lines may start with '@' too: records are found by line count, not by '@'.
    text = "".join(f"@{name}\n{seq}\n+\n{'@I'[i % 2] * len(seq)}\n" for i, (name, seq) in enumerate(records))
    if compress:
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def make_records(n, seed, prefix="r"):
    rng = random.Random(seed)
    return [(f"{prefix}{i}", "".join(rng.choice("ACGT") for _ in range(rng.randint(1, 200)))) for i in range(n)]


def read_all(paths, chunk_bytes, block_bytes=1 << 20):
    chunks = plan_chunks([str(p) for p in paths], chunk_bytes)
    rows = []
    for chunk in chunks:
        for block in read_chunk(chunk, block_bytes):
            data = block.to_pydict()
            rows += list(zip(data["file_index"], data["record"], data["id"], [s.decode() for s in data["sequence"]]))
    return chunks, rows


@pytest.mark.parametrize("fmt", ["fasta", "fastq"])
@pytest.mark.parametrize("compress", [False, True])
def test_chunks_and_blocks_keep_every_record_in_order(tmp_path, fmt, compress):
    records = make_records(500, seed=1)
    path = tmp_path / f"x.{fmt}{'.gz' if compress else ''}"
    (write_fasta if fmt == "fasta" else write_fastq)(path, records, compress=compress)
    chunks, rows = read_all([path], chunk_bytes=3000, block_bytes=2000)
    assert len(chunks) == (1 if compress else len(chunks)) and (compress or len(chunks) > 10)
    assert rows == [(0, i, name, seq) for i, (name, seq) in enumerate(records)]


def test_several_files_keep_their_order(tmp_path):
    first = write_fasta(tmp_path / "a.fa", make_records(30, 2, "a"))
    second = write_fastq(tmp_path / "b.fq.gz", make_records(20, 3, "b"), compress=True)
    _, rows = read_all([second, first], chunk_bytes=500)
    assert [row[2] for row in rows] == [f"b{i}" for i in range(20)] + [f"a{i}" for i in range(30)]
    assert [row[0] for row in rows] == [0] * 20 + [1] * 30


def test_windows_line_endings_and_lowercase(tmp_path):
    path = tmp_path / "crlf.fa"
    path.write_bytes(b">x1 first\r\nACGT\r\nacgt\r\n>x2\r\nGG\r\n")
    _, rows = read_all([path], chunk_bytes=1 << 20)
    assert rows == [(0, 0, "x1", "ACGTacgt"), (0, 1, "x2", "GG")]


@pytest.mark.parametrize("content,needle", [
    (b"", "empty file"),
    (b"\n\n  \n", "empty file"),
    (b"ACGT\n>x\nACGT\n", "sequence with no header"),
    (b">\nACGT\n", "has no id"),
    (b"@r1\nACGT\n+\nIIII\n@r2\nACGT\n+\n", "truncated FASTQ"),
    (b"@r1\nACGT\n+\nIII\n", "lengths differ"),
    (b"@r1\nACGT\nIIII\n+\n", "malformed FASTQ"),
])
def test_malformed_input_is_a_clear_error(tmp_path, content, needle):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        read_all([path], chunk_bytes=1 << 20)
    assert needle in str(caught.value) and str(path) in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        plan_chunks([str(tmp_path / "nope.fa")], 1000)
