"""Readers, `embsolve generate` and `embsolve inspect` on real files written with pyarrow, h5py and
numpy: Ray's three tensor layouts, float16, pickled extension metadata, zstd, HDF5, npy, manifest
order, and bad inputs that must end every rank with exit status 2 and the culprit named."""

import json
import pickle

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import run_bin, run_mpi, write_config

RAY_LAYOUTS = {
    # layout: (arrow type for dim, extension name)
    "large_list": (lambda t, d: pa.large_list(t), "ray.data.arrow_tensor_v2"),
    "list": (lambda t, d: pa.list_(t), "ray.data.arrow_tensor"),
    "fixed_size_list": (lambda t, d: pa.list_(t, d), "arrow.fixed_shape_tensor"),
}


def rows(n, dim, seed=0, dtype=np.float32):
    return (np.random.default_rng(seed).normal(size=(n, dim)) + 0.25).astype(dtype)


def ray_shard(path, values, ids=None, labels=None, layout="large_list", pickled=False,
              compression="snappy", row_group_size=None, column="embedding"):
    """One Parquet file the way Ray Data writes a tensor column (with its extension tags)."""
    n, dim = values.shape
    value_type = pa.float16() if values.dtype == np.float16 else pa.float32()
    make_type, ext_name = RAY_LAYOUTS[layout]
    storage = make_type(value_type, dim)
    flat = pa.array(values.reshape(-1), type=value_type)
    if layout == "fixed_size_list":
        embedding = pa.FixedSizeListArray.from_arrays(flat, dim)
    else:
        offsets = np.arange(n + 1, dtype=np.int64 if layout == "large_list" else np.int32) * dim
        cls = pa.LargeListArray if layout == "large_list" else pa.ListArray
        embedding = cls.from_arrays(pa.array(offsets), flat)
    ext_meta = pickle.dumps((dim,)) if pickled else json.dumps([dim]).encode()
    fields = [pa.field(column, storage, metadata={b"ARROW:extension:name": ext_name.encode(),
                                                   b"ARROW:extension:metadata": ext_meta})]
    arrays = [embedding]
    if ids is not None:
        fields.append(pa.field("id", pa.string() if isinstance(ids[0], str) else pa.int64()))
        arrays.append(pa.array(ids))
    if labels is not None:
        fields.append(pa.field("label", pa.string() if isinstance(labels[0], str) else pa.int64()))
        arrays.append(pa.array(labels))
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    pq.write_table(table, path, compression=compression,
                   row_group_size=row_group_size or max(1, n // 3), use_dictionary=False)
    return path


def inspect(path, check_blocks=3, *extra):
    done = run_bin("inspect", path, "--check", check_blocks, "--json", *extra)
    return json.loads(done.stdout)


def assert_read(report, values, first_id, last_id, tol=1e-5):
    info, check = report["info"], report["check"]
    assert info["n_rows"] == values.shape[0]
    assert info["dim"] == values.shape[1]
    assert check["rows_read"] == values.shape[0]
    np.testing.assert_allclose(check["mean"], values.astype(np.float64).mean(axis=0), rtol=0, atol=tol)
    assert check["first_id"] == first_id
    assert check["last_id"] == last_id


# ---------------------------------------------------------------- generate

def test_generate_parquet_is_ray_layout(tmp_path):
    out = tmp_path / "blobs"
    run_bin("generate", "--kind", "blobs", "--n", 1000, "--dim", 12, "--clusters", 5, "--seed", 4,
            "--format", "parquet", "--shards", 3, "--out", out)
    files = sorted(out.glob("*.parquet"))
    assert len(files) == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["path"] for f in manifest["files"]] == [f.name for f in files]
    assert sum(f["rows"] for f in manifest["files"]) == manifest["n_rows"] == 1000
    assert (manifest["dim"], manifest["dtype"], manifest["format"]) == (12, "float32", "parquet")
    for f in files:
        meta = pq.ParquetFile(f)
        assert meta.num_row_groups > 1
        field = meta.schema_arrow.field("embedding")
        assert field.type == pa.large_list(pa.float32())
        assert field.metadata[b"ARROW:extension:name"] == b"ray.data.arrow_tensor_v2"
        assert meta.schema_arrow.field("id").type == pa.int64()
        assert meta.schema_arrow.field("label").type == pa.int64()
    table = pq.read_table(files)
    assert table.column("id").to_pylist() == list(range(1000))
    assert set(table.column("label").to_pylist()) == set(range(5))


def test_generate_is_seeded_and_the_same_in_every_format(tmp_path):
    common = ["--kind", "blobs", "--n", 300, "--dim", 6, "--clusters", 3, "--seed", 9]
    run_bin("generate", *common, "--format", "parquet", "--shards", 4, "--out", tmp_path / "pq")
    run_bin("generate", *common, "--format", "parquet", "--shards", 1, "--out", tmp_path / "one.parquet")
    run_bin("generate", *common, "--format", "hdf5", "--shards", 2, "--out", tmp_path / "h5")
    run_bin("generate", *common, "--format", "npy", "--shards", 3, "--out", tmp_path / "npy")
    manifest = json.loads((tmp_path / "pq" / "manifest.json").read_text())
    table = pq.read_table([tmp_path / "pq" / f["path"] for f in manifest["files"]])
    reference = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    labels = np.array(table.column("label").to_pylist())
    single = pq.read_table(tmp_path / "one.parquet")
    np.testing.assert_array_equal(np.array(single.column("embedding").to_pylist(), np.float32), reference)
    h5_parts = []
    for f in json.loads((tmp_path / "h5" / "manifest.json").read_text())["files"]:
        with h5py.File(tmp_path / "h5" / f["path"]) as h:
            h5_parts.append((h["embedding"][:], h["id"][:], h["label"][:]))
    np.testing.assert_array_equal(np.concatenate([p[0] for p in h5_parts]), reference)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in h5_parts]), np.arange(300))
    np.testing.assert_array_equal(np.concatenate([p[2] for p in h5_parts]), labels)
    npy_manifest = json.loads((tmp_path / "npy" / "manifest.json").read_text())
    names = [f["path"] for f in npy_manifest["files"]]
    assert all(n.startswith("embedding/") for n in names)
    np.testing.assert_array_equal(np.concatenate([np.load(tmp_path / "npy" / n) for n in names]), reference)
    np.testing.assert_array_equal(
        np.concatenate([np.load(tmp_path / "npy" / n.replace("embedding/", "label/")) for n in names]), labels)
    # Centres are well apart relative to the noise: each row is nearest its own cluster's mean.
    means = np.array([reference[labels == c].mean(axis=0) for c in range(3)])
    nearest = np.argmin(((reference[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (nearest == labels).all()


def test_generate_float16(tmp_path):
    out = tmp_path / "half"
    run_bin("generate", "--kind", "blobs", "--n", 200, "--dim", 8, "--format", "parquet", "--shards", 2,
            "--dtype", "f16", "--out", out)
    f = sorted(out.glob("*.parquet"))[0]
    assert pq.ParquetFile(f).schema_arrow.field("embedding").type == pa.large_list(pa.float16())
    report = inspect(out, 2)
    assert report["info"]["dtype"] == "float16"
    table = pq.read_table(sorted(out.glob("*.parquet")))
    values = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    assert_read(report, values, 0, 199)


def test_generate_rejects_bad_arguments(tmp_path):
    done = run_bin("generate", "--kind", "blobs", "--n", 0, "--format", "npy", "--out", tmp_path / "x",
                   check=False)
    assert done.returncode == 2
    done = run_bin("generate", "--kind", "blobs", "--n", 3, "--shards", 5, "--format", "npy",
                   "--out", tmp_path / "x", check=False)
    assert done.returncode == 2 and "--shards" in done.stderr


# ---------------------------------------------------------------- Parquet readers

@pytest.mark.parametrize("layout", list(RAY_LAYOUTS))
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_ray_tensor_layouts(tmp_path, layout, dtype):
    d = tmp_path / "ds"
    d.mkdir()
    a, b = rows(70, 9, seed=1, dtype=dtype), rows(50, 9, seed=2, dtype=dtype)
    ray_shard(d / "part-a.parquet", a, ids=list(range(1000, 1070)), labels=[i % 4 for i in range(70)],
              layout=layout)
    ray_shard(d / "part-b.parquet", b, ids=list(range(1070, 1120)), labels=[i % 4 for i in range(50)],
              layout=layout)
    report = inspect(d, 4)
    assert report["info"]["dtype"] == ("float16" if dtype == np.float16 else "float32")
    assert report["info"]["id_kind"] == "int"
    assert report["info"]["label_column"] == "label"
    assert [s["row_groups"] for s in report["info"]["shards"]] == [[23, 23, 23, 1], [16, 16, 16, 2]]
    assert_read(report, np.concatenate([a, b]).astype(np.float32), 1000, 1119)


@pytest.mark.parametrize("compression", ["zstd", "snappy", "none"])
def test_pickled_extension_metadata_and_codecs(tmp_path, compression):
    path = ray_shard(tmp_path / "pickled.parquet", rows(40, 5), ids=[f"seq{i}" for i in range(40)],
                     labels=[["kinase", "globin"][i % 2] for i in range(40)], pickled=True,
                     compression=compression)
    meta = pq.ParquetFile(path).schema_arrow.field("embedding").metadata
    assert meta[b"ARROW:extension:metadata"].startswith(b"\x80")  # a pickle, not JSON
    report = inspect(path, 3)
    assert report["info"]["id_kind"] == "string"
    assert_read(report, rows(40, 5), "seq0", "seq39")


def test_manifest_order_wins_over_file_names(tmp_path):
    d = tmp_path / "ordered"
    d.mkdir()
    parts = {"zz.parquet": (0, rows(30, 4, 1)), "aa.parquet": (30, rows(20, 4, 2)),
             "mm.parquet": (50, rows(25, 4, 3))}
    for name, (start, values) in parts.items():
        ray_shard(d / name, values, ids=list(range(start, start + len(values))))
    # Without a manifest: sorted names (aa, mm, zz).
    by_name = np.concatenate([parts[n][1] for n in sorted(parts)])
    assert_read(inspect(d, 3), by_name, 30, 29)
    manifest = {"format": "parquet", "column": "embedding", "id_column": "id", "label_column": "",
                "dim": 4, "dtype": "float32", "n_rows": 75,
                "files": [{"path": n, "rows": len(v)} for n, (s, v) in parts.items()],
                "producer": {"tool": "test"}}
    (d / "manifest.json").write_text(json.dumps(manifest))
    report = inspect(d, 3)
    assert report["info"]["from_manifest"]
    assert [s["path"].rsplit("/", 1)[-1] for s in report["info"]["shards"]] == list(parts)
    assert_read(report, np.concatenate([v for s, v in parts.values()]), 0, 74)


# ---------------------------------------------------------------- HDF5 and npy readers

@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_hdf5_dtypes(tmp_path, dtype):
    values = rows(90, 7, seed=5, dtype=dtype)
    path = tmp_path / "emb.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("embedding", data=values, chunks=(16, 7))
        f.create_dataset("id", data=np.array([f"r{i}" for i in range(90)], dtype=h5py.string_dtype()))
        f.create_dataset("label", data=np.arange(90) % 3)
    report = inspect(path, 4)
    assert report["info"]["dtype"] == np.dtype(dtype).name
    assert report["info"]["label_column"] == "label"
    assert_read(report, values.astype(np.float32), "r0", "r89")


def test_npy_single_file_and_column_directories(tmp_path):
    values = rows(64, 6, seed=8, dtype=np.float64)
    np.save(tmp_path / "one.npy", values)
    report = inspect(tmp_path / "one.npy", 3)
    assert report["info"]["dtype"] == "float64"
    assert report["info"]["id_kind"] is None
    assert_read(report, values, 0, 63)

    d = tmp_path / "cols"
    for sub in ("embedding", "id", "label"):
        (d / sub).mkdir(parents=True)
    halves = [rows(30, 6, seed=1, dtype=np.float16), rows(34, 6, seed=2, dtype=np.float16)]
    for i, part in enumerate(halves):
        np.save(d / "embedding" / f"part-{i}.npy", part)
        np.save(d / "id" / f"part-{i}.npy", np.arange(len(part), dtype=np.int64) + 100 * i)
        np.save(d / "label" / f"part-{i}.npy", np.array(["x", "y"] * (len(part) // 2)))
    report = inspect(d, 5)
    assert report["info"]["dtype"] == "float16"
    assert report["info"]["label_column"] == "label"
    assert_read(report, np.concatenate(halves).astype(np.float32), 0, 133)

    be = tmp_path / "big_endian.npy"
    np.save(be, values.astype(">f4"))
    assert_read(inspect(be, 2), values.astype(np.float32), 0, 63)


# Multi-rank block reads: `io_read_blocks` in tests/test_multirank.py (1-7 ranks).


# ---------------------------------------------------------------- bad inputs

def bad_ragged(tmp):
    d = tmp / "ragged"
    d.mkdir()
    ray_shard(d / "part-0.parquet", rows(30, 4), ids=list(range(30)))
    values = rows(30, 4).tolist()
    values[17] = values[17][:3]
    table = pa.table({"embedding": pa.array(values, type=pa.large_list(pa.float32())),
                      "id": pa.array(range(30, 60), type=pa.int64())})
    pq.write_table(table, d / "part-1.parquet", row_group_size=10)
    return d, "part-1.parquet", "row 17"


def bad_wrong_column(tmp):
    path = ray_shard(tmp / "vec.parquet", rows(30, 4), column="vector")
    return path, "vec.parquet", "embedding"


def bad_object_npy(tmp):
    path = tmp / "ragged.npy"
    np.save(path, np.array([np.zeros(3), np.zeros(5)], dtype=object), allow_pickle=True)
    return path, "ragged.npy", "object array"


def bad_fortran_npy(tmp):
    path = tmp / "fortran.npy"
    np.save(path, np.asfortranarray(rows(20, 3)))
    return path, "fortran.npy", "Fortran"


def bad_escaping_manifest(tmp):
    d = tmp / "escape"
    d.mkdir()
    ray_shard(tmp / "outside.parquet", rows(30, 4))
    (d / "manifest.json").write_text(json.dumps(
        {"format": "parquet", "files": [{"path": "../outside.parquet", "rows": 30}]}))
    return d, "manifest.json", "escapes"


def bad_missing_file(tmp):
    d = tmp / "missing"
    d.mkdir()
    ray_shard(d / "part-0.parquet", rows(30, 4))
    (d / "manifest.json").write_text(json.dumps(
        {"format": "parquet", "files": [{"path": "part-0.parquet", "rows": 30},
                                        {"path": "part-1.parquet", "rows": 30}]}))
    return d, "part-1.parquet", "part-1.parquet"


def bad_manifest_rows(tmp):
    d = tmp / "rows"
    d.mkdir()
    ray_shard(d / "part-0.parquet", rows(30, 4))
    (d / "manifest.json").write_text(json.dumps(
        {"format": "parquet", "files": [{"path": "part-0.parquet", "rows": 31}]}))
    return d, "part-0.parquet", "says 31 rows"


def bad_dims_differ(tmp):
    d = tmp / "dims"
    d.mkdir()
    ray_shard(d / "a.parquet", rows(30, 4))
    ray_shard(d / "b.parquet", rows(30, 5))
    return d, "b.parquet", "dimension"


def bad_hdf5_shape(tmp):
    path = tmp / "flat.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("embedding", data=np.zeros(10, dtype=np.float32))
    return path, "flat.h5", "2-D"


def bad_not_a_dataset(tmp):
    path = tmp / "notes.txt"
    path.write_text("hello")
    return path, "notes.txt", "notes.txt"


BAD = [bad_ragged, bad_wrong_column, bad_object_npy, bad_fortran_npy, bad_escaping_manifest,
       bad_missing_file, bad_manifest_rows, bad_dims_differ, bad_hdf5_shape, bad_not_a_dataset]


@pytest.mark.parametrize("case", BAD, ids=lambda c: c.__name__[4:])
def test_bad_input_names_the_file_on_every_rank(tmp_path, case):
    data, file_named, detail = case(tmp_path)
    done = run_bin("inspect", data, "--check", 3, check=False, timeout=30)
    assert done.returncode == 2, done.stdout + done.stderr
    assert file_named in done.stderr and detail in done.stderr, done.stderr
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.toml", data, out, knn={"k": 2})
    done = run_mpi(3, "run", config, check=False, timeout=30)
    assert done.returncode == 2, done.stdout + done.stderr
    assert file_named in done.stderr and detail in done.stderr, done.stderr
    assert done.stderr.count(detail) == 1, done.stderr  # printed once, by the rank that failed
    assert not (out / "results.h5").exists()
