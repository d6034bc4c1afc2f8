"""Ground-truth labels from a TSV (header row; first column = sequence id) as int64 codes.

Codes number the distinct label values in sorted order, so the same TSV always gives the same
codes; the manifest records the names (`names[code]`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from .kmers import InputError


@dataclass(frozen=True)
class Labels:
    path: str
    column: str
    names: list  # names[code]
    codes: dict  # sequence id -> code

    def producer_section(self) -> dict:
        return {"path": self.path, "column": self.column, "names": self.names}


def read_labels(path: str, column: str) -> Labels:
    """Read `column` of the TSV at `path`, keyed by its first column."""
    try:
        handle = open(path, newline="", encoding="utf-8")
    except OSError as err:
        raise InputError(f"labels {path}: cannot open: {err.strerror}") from err
    with handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if not header:
            raise InputError(f"labels {path}: empty file (expected a header row)")
        header = [name.strip() for name in header]
        if column not in header[1:]:
            raise InputError(
                f"labels {path}: no column {column!r} (columns after the id column: {', '.join(header[1:]) or 'none'})"
            )
        index = header.index(column, 1)
        values = {}
        for line, fields in enumerate(reader, start=2):
            if not fields or all(not field.strip() for field in fields):
                continue
            if len(fields) <= index:
                raise InputError(f"labels {path}: line {line} has {len(fields)} fields, column {column!r} is field {index + 1}")
            seq_id, value = fields[0].strip(), fields[index].strip()
            if not seq_id or not value:
                raise InputError(f"labels {path}: line {line}: empty id or {column!r} value")
            if seq_id in values:
                raise InputError(f"labels {path}: line {line}: id {seq_id!r} appears twice")
            values[seq_id] = value
    if not values:
        raise InputError(f"labels {path}: no rows after the header")
    names = sorted(set(values.values()))
    code_of = {name: code for code, name in enumerate(names)}
    return Labels(path, column, names, {seq_id: code_of[value] for seq_id, value in values.items()})
