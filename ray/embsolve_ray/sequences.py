"""FASTA/FASTQ files as a Ray Data datasource: one read task per chunk (see `fastx`), in input
order, never splitting a record."""

from __future__ import annotations

from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from .fastx import BLOCK_BYTES, SCHEMA, read_chunk


class SequenceDatasource(Datasource):
    """Ray Data datasource over FASTA/FASTQ files; one read task per chunk, in input order."""

    def __init__(self, chunks, block_bytes: int = BLOCK_BYTES, block_records: int = 1 << 30):
        super().__init__()
        self.chunks = list(chunks)
        self.block_bytes = block_bytes
        self.block_records = block_records

    def get_name(self) -> str:
        return "Sequences"

    def estimate_inmemory_data_size(self) -> int:
        return sum(chunk.end - chunk.start for chunk in self.chunks)

    def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
        tasks = []
        for chunk in self.chunks:
            metadata = BlockMetadata(
                num_rows=chunk.n_records,
                size_bytes=chunk.end - chunk.start,
                input_files=[chunk.path],
                exec_stats=None,
            )
            sizes = (self.block_bytes, self.block_records)
            tasks.append(
                ReadTask(
                    lambda chunk=chunk, sizes=sizes: read_chunk(chunk, *sizes),
                    metadata,
                    schema=SCHEMA,
                    per_task_row_limit=per_task_row_limit,
                )
            )
        return tasks
