"""Command line: `python -m embsolve_ray embed ...` and `python -m embsolve_ray submit ...`.

Exit status: 0 success; 2 bad usage or input (the message names the file, record, label or key);
1 any other failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import embsolve_ray  # noqa: E402

from . import __version__  # noqa: E402
from .kmers import ALPHABETS, InputError, resolve_params  # noqa: E402


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m embsolve_ray", description=embsolve_ray.__doc__.strip())
    top.add_argument("--version", action="version", version=f"embsolve-ray {__version__}")
    commands = top.add_subparsers(dest="command", required=True)

    embed = commands.add_parser("embed", help="FASTA/FASTQ -> k-mer embeddings (Parquet shards + manifest.json)")
    embed.add_argument("--input", nargs="+", required=True, metavar="FASTA_OR_FASTQ",
                       help="FASTA or FASTQ files, plain or gzip; their order is the row order")
    embed.add_argument("--alphabet", choices=ALPHABETS, required=True)
    embed.add_argument("--k", type=int, required=True, help="k-mer length")
    embed.add_argument("--method", choices=("counts", "hash"), required=True,
                       help="counts: exact k-mer counts (dim = alphabet^k); hash: signed feature hashing into --dim")
    embed.add_argument("--dim", type=int, help="embedding columns (required for hash; alphabet^k for counts)")
    embed.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    embed.add_argument("--canonical", action="store_true", help="DNA: count a k-mer and its reverse complement together")
    embed.add_argument("--seed", type=int, default=0, help="hash seed (default 0)")
    embed.add_argument("--labels", metavar="TSV", help="labels TSV: header row, first column = sequence id")
    embed.add_argument("--label-column", metavar="NAME", help="the TSV column holding the labels")
    embed.add_argument("--tracks", metavar="DIR", help="also write the token tracks (for [fft]) as a dataset here")
    embed.add_argument("--skip-empty", action="store_true",
                       help="leave out records with no valid k-mer instead of failing")
    embed.add_argument("--rows-per-file", type=int, default=100_000, help="minimum rows per Parquet file")
    embed.add_argument("--rows-per-group", type=int, default=8192, help="rows per Parquet row group")
    embed.add_argument("--out", required=True, metavar="DIR", help="dataset directory to write")

    submit = commands.add_parser("submit", help="submit slurm/embsolve.sbatch on a dataset")
    submit.add_argument("--dataset", required=True, metavar="DIR", help="a dataset directory with manifest.json")
    submit.add_argument("--config", required=True, metavar="CONFIG.toml")
    submit.add_argument("--sbatch-arg", action="append", default=[], metavar="ARG",
                        help="an option for sbatch (repeatable), e.g. --sbatch-arg --ntasks=2")
    submit.add_argument("--script", metavar="SBATCH", help="batch script (default: slurm/embsolve.sbatch)")
    submit.add_argument("--wait", action="store_true", help="poll squeue/scontrol until the job ends")
    submit.add_argument("--timeout", type=float, metavar="SECONDS", help="with --wait: give up after this long")
    return top


def join_option_values(argv: list, option: str) -> list:
    """`--sbatch-arg -n2` -> `--sbatch-arg=-n2`, so values that start with '-' parse."""
    joined = []
    index = 0
    while index < len(argv):
        if argv[index] == option and index + 1 < len(argv):
            joined.append(f"{option}={argv[index + 1]}")
            index += 2
        else:
            joined.append(argv[index])
            index += 1
    return joined


def run_embed_command(args) -> int:
    from .embed import EmbedJob, run_embed

    if args.rows_per_file < 1 or args.rows_per_group < 1:
        raise InputError("--rows-per-file and --rows-per-group must be at least 1")
    params = resolve_params(args.alphabet, args.k, args.method, args.dim, args.dtype, args.canonical, args.seed)
    job = EmbedJob(
        inputs=args.input, params=params, out=Path(args.out), labels_path=args.labels,
        label_column=args.label_column, tracks=Path(args.tracks) if args.tracks else None,
        skip_empty=args.skip_empty, rows_per_file=args.rows_per_file, rows_per_group=args.rows_per_group,
    )
    manifest = run_embed(job)
    timings = " ".join(f"{name}={value:.2f}" for name, value in job.timings.items())
    print(f"embsolve-ray: {manifest['n_rows']} rows x {manifest['dim']} ({manifest['dtype']}) in "
          f"{len(manifest['files'])} files -> {args.out} [{timings}]", file=sys.stderr)
    return 0


def run_submit_command(args) -> int:
    from .submit import build_argv, submit, wait_for

    argv = build_argv(Path(args.dataset), Path(args.config), args.sbatch_arg,
                      Path(args.script) if args.script else None)
    job_id = submit(argv)
    print(job_id, flush=True)
    if not args.wait:
        return 0
    state, exit_code = wait_for(job_id, args.timeout)
    print(json.dumps({"job_id": job_id, "state": state, "exit_code": exit_code}), file=sys.stderr)
    return 0 if state == "COMPLETED" else 1


def main(argv=None) -> int:
    argv = join_option_values(list(sys.argv[1:] if argv is None else argv), "--sbatch-arg")
    args = parser().parse_args(argv)
    try:
        if args.command == "embed":
            return run_embed_command(args)
        return run_submit_command(args)
    except Exception as error:  # map to exit codes; Ray wraps errors raised in tasks
        from .embed import find_input_error

        input_error = find_input_error(error)
        if input_error is not None:
            print(f"embsolve-ray: error: {input_error}", file=sys.stderr)
            return 2
        if isinstance(error, (RuntimeError, TimeoutError)):
            print(f"embsolve-ray: error: {error}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
