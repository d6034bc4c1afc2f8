"""The labelled protein sets derived from the Debian example packages (Stockholm, GenBank)."""

from embsolve_ray.datasets import genbank_proteins, main, stockholm_sequences

STOCKHOLM = """# STOCKHOLM 1.0
#=GF ID   toy
seqA/1-10    MK.VL--aa
seqB/3-9     MKWVL..GG
#=GC SS_cons ........

seqA/1-10    WW~Y
seqB/3-9     -W.Y
//
"""

GENBANK = """LOCUS       KL9                   100 bp    DNA     linear       12-JUL-2018
FEATURES             Location/Qualifiers
     source          1..100
                     /organism="x"
     CDS             complement(1..30)
                     /gene="wzc"
                     /product="protein tyrosine kinase; involved in capsule
                     export"
                     /translation="MNQNT
                     NTEDT"
     gene            31..40
                     /gene="skip"
     CDS             41..70
                     /gene="gtr1"
                     /translation="MKV"
ORIGIN
        1 acgt
//
LOCUS       KL10                  100 bp    DNA     linear       12-JUL-2018
FEATURES             Location/Qualifiers
     CDS             1..30
                     /gene="wzc"
                     /translation="MAAA"
//
"""


def test_stockholm_blocks_are_joined_and_gaps_removed():
    assert stockholm_sequences(STOCKHOLM, "toy") == [("seqA/1-10", "MKVLAAWWY"), ("seqB/3-9", "MKWVLGGWY")]


def test_genbank_cds_translations_with_gene_labels():
    assert genbank_proteins(GENBANK) == [
        ("KL9_001", "MNQNTNTEDT", "wzc", "KL9"),
        ("KL9_002", "MKV", "gtr1", "KL9"),
        ("KL10_001", "MAAA", "wzc", "KL10"),
    ]


def test_kaptive_min_family_writes_fasta_and_labels(tmp_path):
    gbk = tmp_path / "k.gbk"
    gbk.write_text(GENBANK)
    assert main(["kaptive", str(gbk), str(tmp_path / "out"), "--min-family", "2"]) == 0
    assert (tmp_path / "out" / "labels.tsv").read_text() == "id\tgene\tlocus\nKL9_001\twzc\tKL9\nKL10_001\twzc\tKL10\n"
    assert (tmp_path / "out" / "proteins.fasta").read_text() == ">KL9_001\nMNQNTNTEDT\n>KL10_001\nMAAA\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["labels.tsv", "proteins.fasta"]
