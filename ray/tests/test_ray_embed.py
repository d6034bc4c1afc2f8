"""Stage 1 end to end on a real local Ray (num_cpus=2, small object store): FASTA/FASTQ in,
Parquet shards and manifest.json out, read back with pyarrow and compared to the numpy oracle."""

import gzip
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embsolve_ray.embed import EmbedJob, ensure_ray, find_input_error, run_embed
from embsolve_ray.kmers import InputError, resolve_params
import ray_reference as reference

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_PARENT = ROOT / "ray"
BIN = Path(os.environ.get("EMBSOLVE_BIN", ROOT / "target" / "release" / "embsolve"))


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    import ray

    ensure_ray(num_cpus=2, object_store_bytes=200 << 20)
    yield
    ray.shutdown()


def random_protein(rng, length):
    return "".join(rng.choice(reference.AMINO_ACIDS) for _ in range(length))


def write_fasta(path, records, compress=False):
    text = "".join(f">{name}\n" + "".join(seq[i:i + 60] + "\n" for i in range(0, len(seq), 60)) for name, seq in records)
    if compress:
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def protein_families(tmp_path, n_per_family=40, seed=0):
    """Three families: mutated copies of three random ancestors, interleaved, in two files."""
    rng = random.Random(seed)
    ancestors = [random_protein(rng, 150) for _ in range(3)]
    records, labels = [], {}
    for i in range(3 * n_per_family):
        family = i % 3
        seq = "".join(c if rng.random() > 0.15 else rng.choice(reference.AMINO_ACIDS) for c in ancestors[family])
        records.append((f"p{i}", seq))
        labels[f"p{i}"] = f"fam{'CAB'[family]}"
    cut = len(records) * 7 // 12
    first = write_fasta(tmp_path / "one.fa", records[:cut])
    second = write_fasta(tmp_path / "two.fa.gz", records[cut:], compress=True)
    return [first, second], records, labels


def read_dataset(directory):
    manifest = json.loads((directory / "manifest.json").read_text())
    tables = [pq.read_table(directory / entry["path"]) for entry in manifest["files"]]
    return manifest, tables


def storage(array):
    """The plain Arrow storage of a column (Ray's extension types are registered once ray is imported)."""
    return array.storage if isinstance(array.type, pa.ExtensionType) else array


def type_text(arrow_type):
    """An Arrow type spelled without child field names: large_list<float>, struct<data: ...>."""
    if pa.types.is_large_list(arrow_type) or pa.types.is_list(arrow_type):
        kind = "large_list" if pa.types.is_large_list(arrow_type) else "list"
        return f"{kind}<{type_text(arrow_type.value_type)}>"
    if pa.types.is_struct(arrow_type):
        return "struct<" + ", ".join(f"{f.name}: {type_text(f.type)}" for f in arrow_type) + ">"
    return str(arrow_type)


def field_kind(field):
    """(storage type, extension name) of a schema field."""
    if isinstance(field.type, pa.ExtensionType):
        return type_text(field.type.storage_type), field.type.extension_name
    return type_text(field.type), (field.metadata or {}).get(b"ARROW:extension:name", b"").decode()


def embedding_matrix(tables, column="embedding"):
    rows = []
    for table in tables:
        for chunk in table.column(column).chunks:
            flat = storage(chunk).flatten().to_numpy(zero_copy_only=False)
            rows.append(flat.reshape(len(chunk), -1))
    return np.concatenate(rows)


def track_tokens(tables):
    return [row["data"] for t in tables for chunk in t.column("tokens").chunks for row in storage(chunk).to_pylist()]


def test_counts_dataset_matches_reference_and_manifest(tmp_path):
    paths, records, _ = protein_families(tmp_path)
    out = tmp_path / "emb"
    job = EmbedJob(paths, resolve_params("protein", 2, "counts", None), out, rows_per_file=25, rows_per_group=10,
                   chunk_bytes=2000)
    manifest = run_embed(job)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"] + [f"part-{i:05d}.parquet" for i in range(len(manifest["files"]))]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".emb.")]  # no staging left behind
    on_disk, tables = read_dataset(out)
    assert on_disk == manifest
    assert manifest["n_rows"] == len(records) == sum(t.num_rows for t in tables)
    assert [entry["rows"] for entry in manifest["files"]] == [t.num_rows for t in tables]
    assert len(manifest["files"]) > 2 and manifest["dim"] == 21 ** 2 and manifest["dtype"] == "float32"
    assert manifest["column"] == "embedding" and manifest["id_column"] == "id" and manifest["label_column"] == ""
    assert manifest["producer"]["tool"] == "embsolve-ray" and manifest["producer"]["k"] == 2
    # Row order is the input order across files (plain, then gzip).
    ids = [i for t in tables for i in t.column("id").to_pylist()]
    assert ids == [name for name, _ in records]
    # Schema: the tensor column as Ray writes it; several row groups; zstd; no dictionary.
    assert field_kind(tables[0].schema.field("embedding")) == ("large_list<float>", "ray.data.arrow_tensor_v2")
    meta = pq.ParquetFile(out / manifest["files"][0]["path"]).metadata
    assert meta.num_row_groups >= 2
    column = meta.row_group(0).column(tables[0].schema.get_field_index("embedding"))
    assert column.compression == "ZSTD" and "RLE_DICTIONARY" not in str(column.encodings)
    matrix = embedding_matrix(tables)
    expected = np.array([reference.embedding(seq, "protein", 2, "counts", 441) for _, seq in records])
    np.testing.assert_allclose(matrix, expected, rtol=1e-6, atol=1e-7)


def test_hash_float16_labels_and_tracks(tmp_path):
    paths, records, labels = protein_families(tmp_path, n_per_family=20, seed=1)
    tsv = tmp_path / "labels.tsv"
    tsv.write_text("id\tspecies\tfamily\n" + "".join(f"{k}\tx\t{v}\n" for k, v in reversed(labels.items())))
    out, tracks = tmp_path / "emb", tmp_path / "tracks"
    job = EmbedJob(paths, resolve_params("protein", 3, "hash", 128, "float16", seed=5), out, str(tsv), "family",
                   tracks=tracks, rows_per_file=16, rows_per_group=8, chunk_bytes=1500)
    manifest = run_embed(job)
    _, tables = read_dataset(out)
    assert manifest["label_column"] == "label" and manifest["dtype"] == "float16"
    assert field_kind(tables[0].schema.field("embedding"))[0] == "large_list<halffloat>"
    names = manifest["producer"]["labels"]["names"]
    assert names == ["famA", "famB", "famC"] and manifest["producer"]["labels"]["column"] == "family"
    codes = [c for t in tables for c in t.column("label").to_pylist()]
    assert str(tables[0].schema.field("label").type) == "int64"
    assert [names[c] for c in codes] == [labels[name] for name, _ in records]
    matrix = embedding_matrix(tables)
    expected = np.array([reference.embedding(seq, "protein", 3, "hash", 128, seed=5) for _, seq in records])
    np.testing.assert_allclose(matrix, expected.astype(np.float16), rtol=2e-3, atol=1e-3)
    # Token tracks: the same rows, tokens per the SPEC, ragged tensors as Ray writes them.
    track_manifest, track_tables = read_dataset(tracks)
    assert track_manifest["column"] == "tokens" and track_manifest["n_rows"] == len(records)
    kind = field_kind(track_tables[0].schema.field("tokens"))
    assert kind == ("struct<data: large_list<uint8>, shape: list<int64>>",
                    "ray.data.arrow_variable_shaped_tensor")
    tokens = track_tokens(track_tables)
    assert tokens == [[reference.token(c, "protein") for c in seq] for _, seq in records]
    assert [i for t in track_tables for i in t.column("id").to_pylist()] == [name for name, _ in records]


def test_dna_canonical_fastq_tracks(tmp_path):
    rng = random.Random(4)
    reads = [(f"read{i}", "".join(rng.choice("ACGTACGTN" if i % 7 == 0 else "ACGT") for _ in range(rng.randint(30, 90))))
             for i in range(150)]
    fastq = tmp_path / "reads.fq"
    fastq.write_text("".join(f"@{n}\n{s}\n+\n{'F' * len(s)}\n" for n, s in reads))
    manifest = run_embed(EmbedJob([fastq], resolve_params("dna", 4, "counts", None, canonical=True), tmp_path / "emb",
                                  tracks=tmp_path / "tr", rows_per_file=40, chunk_bytes=1000))
    _, tables = read_dataset(tmp_path / "emb")
    expected = np.array([reference.embedding(s, "dna", 4, "counts", 256, canonical=True) for _, s in reads])
    np.testing.assert_allclose(embedding_matrix(tables), expected, rtol=1e-6, atol=1e-7)
    assert manifest["producer"]["canonical"] is True
    _, track_tables = read_dataset(tmp_path / "tr")
    assert track_tokens(track_tables) == [[reference.token(c, "dna") for c in s] for _, s in reads]


def test_failure_leaves_no_manifest_and_keeps_old_dataset(tmp_path):
    paths, records, _ = protein_families(tmp_path)
    out = tmp_path / "emb"
    params = resolve_params("protein", 1, "counts", None)
    first = run_embed(EmbedJob(paths, params, out, rows_per_file=50))
    before = (out / "manifest.json").read_text()
    bad = tmp_path / "bad.fa"
    bad.write_text("".join(f">ok{i}\n{seq}\n" for i, (_, seq) in enumerate(records)) + ">broken\nMKV1LL\n")
    with pytest.raises(Exception) as caught:
        run_embed(EmbedJob([bad], params, out, chunk_bytes=500))
    error = find_input_error(caught.value)
    assert error is not None and "record 120 ('broken')" in str(error) and "'1'" in str(error)
    assert (out / "manifest.json").read_text() == before  # the old complete dataset is untouched
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    # A rerun replaces the dataset; a directory that is not a dataset is never replaced.
    second = run_embed(EmbedJob(paths, resolve_params("protein", 2, "counts", None), out))
    assert second["dim"] == 441 and first["dim"] == 21
    other = tmp_path / "not-a-dataset"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not an embsolve-ray dataset"):
        run_embed(EmbedJob(paths, params, other))


def test_missing_label_and_empty_record_are_clear_errors(tmp_path):
    paths, records, labels = protein_families(tmp_path, n_per_family=10)
    tsv = tmp_path / "labels.tsv"
    tsv.write_text("id\tfamily\n" + "".join(f"{k}\t{v}\n" for k, v in labels.items() if k != "p17"))
    with pytest.raises(Exception) as caught:
        run_embed(EmbedJob(paths, resolve_params("protein", 2, "counts", None), tmp_path / "a", str(tsv), "family"))
    assert "no row for sequence 'p17'" in str(find_input_error(caught.value))
    with pytest.raises(InputError, match="no column 'clade'"):
        run_embed(EmbedJob(paths, resolve_params("protein", 2, "counts", None), tmp_path / "b", str(tsv), "clade"))
    short = write_fasta(tmp_path / "short.fa", [("long", "MKVLAAGG"), ("tiny", "MK"), ("long2", "GGHHKL")])
    params = resolve_params("protein", 3, "counts", None)
    with pytest.raises(Exception) as caught:
        run_embed(EmbedJob([short], params, tmp_path / "c"))
    assert "('tiny'): no 3-mer" in str(find_input_error(caught.value))
    manifest = run_embed(EmbedJob([short], params, tmp_path / "c", skip_empty=True))
    assert manifest["n_rows"] == 2
    _, tables = read_dataset(tmp_path / "c")
    assert tables[0].column("id").to_pylist() == ["long", "long2"]


def run_cli(*args, cwd=None):
    """`python -m embsolve_ray ARGS`, joining this module's Ray instead of starting a second one."""
    import ray

    env = dict(os.environ, PYTHONPATH=str(PACKAGE_PARENT), RAY_AUTH_MODE="disabled",
               RAY_ADDRESS=ray.get_runtime_context().gcs_address)
    return subprocess.run([sys.executable, "-m", "embsolve_ray", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=cwd)


@pytest.mark.parametrize("content,extra,needle", [
    ("", [], "empty file"),
    ("MKVL\n>x\nMKV\n", [], "sequence with no header"),
    (">x\nMKVL\n", ["--alphabet", "rna"], "invalid choice: 'rna'"),
    (">x\nMKVL\n", ["--labels", "missing.tsv", "--label-column", "family"], "cannot open"),
])
def test_cli_bad_input_exits_2(tmp_path, content, extra, needle):
    fasta = tmp_path / "in.fa"
    fasta.write_text(content)
    args = ["embed", "--input", fasta, "--alphabet", "protein", "--k", "2", "--method", "counts", "--out", tmp_path / "o"]
    done = run_cli(*(args + extra))
    assert done.returncode == 2, done.stderr
    assert needle in done.stderr
    assert not (tmp_path / "o").exists()


def test_cli_embed_then_embsolve_on_two_ranks(tmp_path):
    """FASTA -> `python -m embsolve_ray embed` -> `embsolve run` on 2 ranks -> results with ARI."""
    paths, records, labels = protein_families(tmp_path, n_per_family=30, seed=9)
    tsv = tmp_path / "labels.tsv"
    tsv.write_text("id\tfamily\n" + "".join(f"{k}\t{v}\n" for k, v in labels.items()))
    out = tmp_path / "emb"
    done = run_cli("embed", "--input", *paths, "--alphabet", "protein", "--k", "3", "--method", "hash", "--dim", 256,
                   "--labels", tsv, "--label-column", "family", "--rows-per-file", 40, "--out", out)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_rows"] == 90 and len(manifest["files"]) >= 2
    if not BIN.exists():
        pytest.skip(f"no embsolve binary at {BIN}")
    mpi_env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                   OMPI_MCA_rmaps_base_oversubscribe="1", EMBSOLVE_NO_PROGRESS="1")
    inspect = subprocess.run([str(BIN), "inspect", str(out)], capture_output=True, text=True, env=mpi_env, timeout=60)
    assert inspect.returncode == 0, inspect.stderr
    assert re.search(r"rows:\s+90\b", inspect.stdout) and re.search(r"labels:\s+yes", inspect.stdout), inspect.stdout
    config = tmp_path / "run.toml"
    config.write_text(f'[input]\npath = "{out}"\nlabel_column = "label"\n[output]\ndir = "{tmp_path / "res"}"\n'
                      "[knn]\nk = 8\n[spectral]\nn_eigs = 6\nn_clusters = 3\n")
    run = subprocess.run(["mpirun", "--oversubscribe", "-n", "2", str(BIN), "run", str(config)], capture_output=True,
                         text=True, env=mpi_env, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "res" / "run.json").read_text())
    assert result["n_rows"] == 90 and result["dim"] == 256 and result["n_ranks"] == 2
    assert result["results"]["ari"]["spectral"] > 0.9


PFAM8 = ROOT / "data" / "pfam8"


@pytest.mark.skipif(not (PFAM8 / "labels.tsv").exists(), reason="run scripts/fetch_data.sh for data/pfam8")
def test_real_pfam_families(tmp_path):
    """The 8 Pfam seed families of hmmer-examples: every protein kept, labels joined per family."""
    manifest = run_embed(EmbedJob([PFAM8 / "proteins.fasta"], resolve_params("protein", 3, "hash", 1024), tmp_path / "e",
                                  str(PFAM8 / "labels.tsv"), "family"))
    assert manifest["n_rows"] == 321
    names = manifest["producer"]["labels"]["names"]
    assert names == sorted(["Caudal_act", "Globin", "LuxC", "Patched", "Pkinase", "RRM_1", "SMC_N", "fn3"])
    _, tables = read_dataset(tmp_path / "e")
    sizes = np.bincount([c for t in tables for c in t.column("label").to_pylist()])
    assert dict(zip(names, sizes.tolist())) == {"Caudal_act": 9, "Globin": 45, "LuxC": 13, "Patched": 10,
                                                "Pkinase": 38, "RRM_1": 79, "SMC_N": 29, "fn3": 98}
    np.testing.assert_allclose(np.linalg.norm(embedding_matrix(tables), axis=1), 1.0, rtol=1e-5)
