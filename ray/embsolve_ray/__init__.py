"""Stage 1 of embsolve: FASTA/FASTQ -> k-mer embeddings with Ray Data -> Parquet dataset -> Slurm."""

__version__ = "0.1.0"
