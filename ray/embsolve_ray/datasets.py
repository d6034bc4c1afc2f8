"""Labelled protein sets from the Debian example packages, as FASTA plus a labels TSV
(standard library only, so `scripts/fetch_data.sh` can run it before the Ray environment exists).

    python3 -m embsolve_ray.datasets pfam HMMER_EXAMPLES_DIR OUT_DIR
        8 Pfam seed families of `hmmer-examples` (Stockholm alignments and globins45.fa), gaps
        removed: OUT_DIR/proteins.fasta and OUT_DIR/labels.tsv (id, family).
    python3 -m embsolve_ray.datasets kaptive GENBANK OUT_DIR [--min-family N]
        The CDS translations of a Kaptive locus reference (GenBank), labelled by their /gene name:
        OUT_DIR/proteins.fasta and OUT_DIR/labels.tsv (id, gene, locus); with --min-family only
        genes with at least N proteins are kept.
Both write to temporary names and rename, so a present labels.tsv means a complete set.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import sys
from collections import Counter
from pathlib import Path

# (file under the examples directory, family label)
PFAM_FILES = [
    ("tutorial/Pkinase.sto", "Pkinase"),
    ("tutorial/fn3.sto", "fn3"),
    ("tutorial/globins45.fa", "Globin"),
    ("testsuite/RRM_1.sto.gz", "RRM_1"),
    ("testsuite/SMC_N.sto.gz", "SMC_N"),
    ("testsuite/LuxC.sto.gz", "LuxC"),
    ("testsuite/Patched.sto.gz", "Patched"),
    ("testsuite/Caudal_act.sto.gz", "Caudal_act"),
]
GAPS = str.maketrans("", "", ".-~ ")


def read_text(path: Path) -> str:
    if path.suffix == ".gz":
        with gzip.open(path, "rt") as handle:
            return handle.read()
    return path.read_text()


def stockholm_sequences(text: str, source: str) -> list:
    """(name, ungapped upper-case sequence) of each sequence of a Stockholm alignment."""
    order, pieces = [], {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#") or line.startswith("//"):
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{source}: unexpected alignment line {line[:60]!r}")
        name, aligned = fields
        if name not in pieces:
            order.append(name)
            pieces[name] = []
        pieces[name].append(aligned)
    return [(name, "".join(pieces[name]).translate(GAPS).upper()) for name in order]


def fasta_sequences(text: str) -> list:
    records = []
    for block in text.split(">")[1:]:
        header, _, body = block.partition("\n")
        records.append((header.split()[0], "".join(body.split()).translate(GAPS).upper()))
    return records


def pfam(examples: Path) -> list:
    """(id, sequence, family) of the 8 families, in file order."""
    rows = []
    for relative, family in PFAM_FILES:
        path = examples / relative
        text = read_text(path)
        records = fasta_sequences(text) if relative.endswith(".fa") else stockholm_sequences(text, str(path))
        rows += [(name, seq, family) for name, seq in records]
    return rows


def genbank_proteins(text: str) -> list:
    """(id, translation, gene, locus) of every CDS with a /translation; id = LOCUS_NNN."""
    rows = []
    for record in text.split("\n//"):
        locus_match = re.search(r"^LOCUS\s+(\S+)", record, re.MULTILINE)
        if not locus_match:
            continue
        locus = locus_match.group(1)
        features = record.split("\nFEATURES", 1)[-1].split("\nORIGIN", 1)[0]
        number = 0
        for feature in re.split(r"\n     (?=\S)", features):
            if not feature.startswith("CDS"):
                continue
            qualifiers = dict(
                (key, " ".join(value.split()))
                for key, value in re.findall(r'/(\w+)="([^"]*)"', feature)
            )
            translation = qualifiers.get("translation", "").replace(" ", "")
            if not translation:
                continue
            number += 1
            gene = qualifiers.get("gene") or qualifiers.get("locus_tag") or "unknown"
            rows.append((f"{locus}_{number:03d}", translation, gene, locus))
    return rows


def write_set(out: Path, records: list, header: list) -> None:
    """proteins.fasta and labels.tsv (header + one row per record, the id first)."""
    out.mkdir(parents=True, exist_ok=True)
    ids = [row[0] for row in records]
    duplicates = [name for name, count in Counter(ids).items() if count > 1]
    if duplicates:
        raise ValueError(f"duplicate ids: {', '.join(duplicates[:5])}")
    fasta_tmp, labels_tmp = out / ".proteins.fasta.tmp", out / ".labels.tsv.tmp"
    with open(fasta_tmp, "w") as fasta:
        for name, seq, *_ in records:
            fasta.write(f">{name}\n")
            for start in range(0, len(seq), 60):
                fasta.write(seq[start : start + 60] + "\n")
    with open(labels_tmp, "w") as labels:
        labels.write("\t".join(header) + "\n")
        for name, _, *values in records:
            labels.write("\t".join([name, *values]) + "\n")
    os.replace(fasta_tmp, out / "proteins.fasta")
    os.replace(labels_tmp, out / "labels.tsv")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m embsolve_ray.datasets", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pfam_cmd = commands.add_parser("pfam")
    pfam_cmd.add_argument("examples", type=Path, help="the hmmer examples directory (.../doc/hmmer/examples)")
    pfam_cmd.add_argument("out", type=Path)
    kaptive_cmd = commands.add_parser("kaptive")
    kaptive_cmd.add_argument("genbank", type=Path)
    kaptive_cmd.add_argument("out", type=Path)
    kaptive_cmd.add_argument("--min-family", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        if args.command == "pfam":
            records = pfam(args.examples)
            write_set(args.out, records, ["id", "family"])
        else:
            records = genbank_proteins(read_text(args.genbank))
            sizes = Counter(row[2] for row in records)
            records = [row for row in records if sizes[row[2]] >= args.min_family]
            write_set(args.out, records, ["id", "gene", "locus"])
    except (OSError, ValueError) as err:
        print(f"datasets: {err}", file=sys.stderr)
        return 2
    families = len({row[2] for row in records})
    print(f"datasets: {len(records)} proteins, {families} labels -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
