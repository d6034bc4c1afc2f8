#!/usr/bin/env python3
"""Turn the Pfam seed families shipped in Debian's hmmer-examples into one FASTA file and a labels
TSV (header `id<TAB>family`), the input of the main job's stage 1.

Stockholm alignments are read block by block (a sequence's pieces are joined in order), alignment
gaps (`.`, `-`, `~`) are removed and residues upper-cased. Ids are `FAMILY|NAME`, unique across
families.

Usage: scripts/pfam_families.py EXAMPLES_DIR OUT_DIR
"""

import gzip
import sys
from pathlib import Path

# family name -> file, relative to /usr/share/doc/hmmer/examples
FAMILIES = {
    "Pkinase": "tutorial/Pkinase.sto",
    "fn3": "tutorial/fn3.sto",
    "globins": "tutorial/globins45.fa",
    "RRM_1": "testsuite/RRM_1.sto.gz",
    "SMC_N": "testsuite/SMC_N.sto.gz",
    "LuxC": "testsuite/LuxC.sto.gz",
    "Patched": "testsuite/Patched.sto.gz",
    "Caudal_act": "testsuite/Caudal_act.sto.gz",
}
GAPS = str.maketrans("", "", ".-~")


def open_text(path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def read_stockholm(path):
    order, pieces = [], {}
    with open_text(path) as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#") or line.startswith("//"):
                continue
            parts = line.split()
            if len(parts) != 2:
                raise SystemExit(f"{path}:{number}: expected 'name sequence', got {line!r}")
            name, residues = parts
            if name not in pieces:
                order.append(name)
                pieces[name] = []
            pieces[name].append(residues)
    return [(name, "".join(pieces[name])) for name in order]


def read_fasta(path):
    records, name, residues = [], None, []
    with open_text(path) as handle:
        for line in handle:
            line = line.strip()
            if line.startswith(">"):
                if name is not None:
                    records.append((name, "".join(residues)))
                name, residues = line[1:].split()[0], []
            elif line:
                residues.append(line)
    if name is not None:
        records.append((name, "".join(residues)))
    return records


def main(argv):
    if len(argv) != 3:
        raise SystemExit(__doc__)
    examples, out = Path(argv[1]), Path(argv[2])
    out.mkdir(parents=True, exist_ok=True)
    fasta_lines, label_lines, counts = [], ["id\tfamily"], {}
    for family, relative in FAMILIES.items():
        path = examples / relative
        if not path.exists():
            raise SystemExit(f"pfam_families: {path} is missing (run scripts/fetch_data.sh hmmer-examples)")
        reader = read_stockholm if ".sto" in path.name else read_fasta
        for name, residues in reader(path):
            sequence = residues.translate(GAPS).upper()
            if not sequence:
                continue
            seq_id = f"{family}|{name}"
            fasta_lines += [f">{seq_id}", sequence]
            label_lines.append(f"{seq_id}\t{family}")
            counts[family] = counts.get(family, 0) + 1
    (out / "families.fasta").write_text("\n".join(fasta_lines) + "\n")
    (out / "labels.tsv").write_text("\n".join(label_lines) + "\n")
    summary = ", ".join(f"{family} {n}" for family, n in counts.items())
    print(f"pfam_families: {sum(counts.values())} sequences in {len(counts)} families ({summary}) -> {out}")


if __name__ == "__main__":
    main(sys.argv)
