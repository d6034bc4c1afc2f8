"""FFT analysis of token tracks end to end: `generate --kind tracks`,
and `embsolve run` with [fft] on Parquet and HDF5 tracks at 1-4 ranks: identical /fft/period3 and
/fft/features at every rank count (a single sequence longer than every rank's span), scores and
mean power equal to a numpy rfft of the same windows, and planted coding windows detected."""

from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from conftest import run_bin, run_mpi, write_config

WINDOW, STEP, BINS = 240, 60, 16


def numpy_power(tokens, starts, window, channels=4):
    """Power spectra of the windows: sum over indicator channels of |rfft|^2 / window, DC = 0."""
    frames = np.stack([tokens[s:s + window] for s in starts])
    power = np.zeros((len(starts), window // 2 + 1))
    for channel in range(channels):
        spectrum = np.fft.rfft((frames == channel).astype(np.float64), axis=1)
        power += spectrum.real ** 2 + spectrum.imag ** 2
    power /= window
    power[:, 0] = 0.0
    return power


def numpy_period3(power, window):
    return power[:, (window + 1) // 3] / power[:, 1:].mean(axis=1)


def numpy_band_means(power, bins):
    """Mean power of `bins` bands of the non-zero frequencies 1..=window/2 (the DC bin is in none)."""
    n_nonzero = power.shape[1] - 1
    edges = [(1 + b * n_nonzero // bins, 1 + (b + 1) * n_nonzero // bins) for b in range(bins)]
    return np.stack([power[:, lo:hi].mean(axis=1) for lo, hi in edges], axis=1)


def tiny_embeddings(tmp_path):
    out = tmp_path / "emb.npy"
    run_bin("generate", "--kind", "blobs", "--n", 64, "--dim", 4, "--clusters", 2, "--format", "npy",
            "--out", out)
    return out


def run_fft(tmp_path, ranks, tracks, name, **fft):
    keys = {"enabled": True, "tracks": str(tracks), "window": WINDOW, "step": STEP, "bins": BINS}
    keys.update(fft)
    out = tmp_path / name
    config = write_config(tmp_path / f"{name}.toml", tiny_embeddings(tmp_path), out,
                          knn={"k": 4}, pagerank={"enabled": False}, spectral={"enabled": False},
                          output={"write_knn": False}, fft=keys)
    run_mpi(ranks, "run", config, timeout=180)
    with h5py.File(out / "results.h5", "r") as f:
        return {
            "seq": f["fft/period3/seq"][:],
            "start": f["fft/period3/start"][:],
            "score": f["fft/period3/score"][:],
            "features": f["fft/features"][:],
            "mean_power": f["fft/mean_power"][:],
        }


def test_generate_tracks_parquet_layout(tmp_path):
    out = tmp_path / "tracks"
    run_bin("generate", "--kind", "tracks", "--n", 12, "--length", 3000, "--seed", 5,
            "--format", "parquet", "--shards", 3, "--out", out)
    files = sorted(out.glob("part-*.parquet"))
    assert len(files) == 3
    column = pq.read_table(files[0]).column("tokens")
    assert pa.types.is_struct(column.type)
    assert {column.type.field(i).name for i in range(column.type.num_fields)} == {"data", "shape"}
    assert (out / "manifest.json").is_file()
    truth = np.loadtxt(out / "coding.csv", delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    assert len(truth) > 12 and np.all(truth[:, 2] > truth[:, 1])
    assert np.all((truth[:, 2] - truth[:, 1]) % 3 == 0)


def test_period3_identical_at_every_rank_count_and_equal_to_numpy(tmp_path):
    # One long sequence (about 20 kbp) among short ones: at 4 ranks it is split by position.
    tracks = tmp_path / "tracks.h5"
    rng = np.random.default_rng(11)
    lengths = [700, 20_000, 239, 240, 1500, 0, 3100]
    tokens = rng.integers(0, 5, size=sum(lengths)).astype(np.uint8)
    with h5py.File(tracks, "w") as f:
        f["tokens"] = tokens
        f["offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    results = {ranks: run_fft(tmp_path, ranks, tracks, f"p{ranks}") for ranks in [1, 2, 3, 4]}
    base = results[1]
    for ranks in [2, 3, 4]:
        for key in ["seq", "start", "score", "features", "mean_power"]:
            np.testing.assert_array_equal(results[ranks][key], base[key], err_msg=f"{key} at {ranks} ranks")
    # Every window once, in order; scores equal numpy's rfft of the same windows.
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    expected = [(s, start) for s, n in enumerate(lengths) for start in range(0, n - WINDOW + 1, STEP)]
    assert list(zip(base["seq"], base["start"])) == expected
    power = numpy_power(tokens, [offsets[s] + st for s, st in expected], WINDOW)
    scores = numpy_period3(power, WINDOW)
    np.testing.assert_allclose(base["score"], scores, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(base["mean_power"], numpy_band_means(power, BINS).mean(axis=0), rtol=1e-5)
    # Feature rows: ln of the sequence's mean band power; NaN for a sequence without windows.
    seqs = np.array([s for s, _ in expected])
    bands = numpy_band_means(power, BINS)
    for s, n in enumerate(lengths):
        if n < WINDOW:
            assert np.all(np.isnan(base["features"][s]))
        else:
            np.testing.assert_allclose(base["features"][s], np.log(bands[seqs == s].mean(axis=0)), atol=1e-4)


def auc(positive, negative):
    return roc_auc_score(np.r_[np.ones(len(positive)), np.zeros(len(negative))], np.r_[positive, negative])


def coding_labels(seq, start, truth, window):
    """1 for windows >= 90% inside a coding segment, 0 for <= 10%, -1 otherwise."""
    labels = np.full(len(seq), -1)
    by_seq = {}
    for s, lo, hi in truth:
        by_seq.setdefault(int(s), []).append((int(lo), int(hi)))
    for i, (s, st) in enumerate(zip(seq, start)):
        covered = sum(max(0, min(hi, st + window) - max(lo, st)) for lo, hi in by_seq.get(int(s), []))
        fraction = covered / window
        labels[i] = 1 if fraction >= 0.9 else (0 if fraction <= 0.1 else -1)
    return labels


@pytest.mark.parametrize("fmt,ranks", [("parquet", 3), ("hdf5", 2)])
def test_planted_coding_segments_are_detected(tmp_path, fmt, ranks):
    out = tmp_path / "tracks"
    run_bin("generate", "--kind", "tracks", "--n", 6, "--length", 20_000, "--seed", 3,
            "--format", fmt, "--shards", 2, "--out", out)
    result = run_fft(tmp_path, ranks, out, "planted")
    truth = np.loadtxt(out / "coding.csv", delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    labels = coding_labels(result["seq"], result["start"], truth, WINDOW)
    positive, negative = result["score"][labels == 1], result["score"][labels == 0]
    assert len(positive) > 50 and len(negative) > 50
    assert auc(positive, negative) >= 0.95


def test_bad_tokens_exit_2_naming_the_file(tmp_path):
    tracks = tmp_path / "bad.h5"
    with h5py.File(tracks, "w") as f:
        f["tokens"] = np.array([0, 1, 2, 9] * 100, dtype=np.int32)
        f["offsets"] = np.array([0, 400], dtype=np.int64)
    config = write_config(tmp_path / "bad.toml", tiny_embeddings(tmp_path), tmp_path / "out",
                          knn={"k": 4}, pagerank={"enabled": False}, spectral={"enabled": False},
                          fft={"enabled": True, "tracks": str(tracks)})
    done = run_mpi(2, "run", config, check=False)
    assert done.returncode == 2, done.stderr
    assert "bad.h5" in done.stderr and "/tokens[3]" in done.stderr


def test_bands_cover_the_non_zero_frequencies_only(tmp_path):
    """At bins = window/2 every band is one non-zero frequency (no band holds only the DC bin, whose
    power is 0 and whose ln would be -inf); one band more is a config error naming fft.bins."""
    tokens = np.random.default_rng(7).integers(0, 4, size=3_000).astype(np.uint8)
    tracks = tmp_path / "one.h5"
    with h5py.File(tracks, "w") as f:
        f["tokens"] = tokens
        f["offsets"] = np.array([0, len(tokens)], dtype=np.int64)
    result = run_fft(tmp_path, 1, tracks, "perbin", bins=WINDOW // 2)
    starts = list(range(0, len(tokens) - WINDOW + 1, STEP))
    power = numpy_power(tokens, starts, WINDOW)
    assert np.all(np.isfinite(result["features"])) and np.all(result["mean_power"] > 0)
    np.testing.assert_allclose(result["mean_power"], power[:, 1:].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(result["features"][0], np.log(power[:, 1:].mean(axis=0)), atol=1e-4)
    config = write_config(tmp_path / "toomany.toml", tiny_embeddings(tmp_path), tmp_path / "toomany",
                          knn={"k": 4}, pagerank={"enabled": False}, spectral={"enabled": False},
                          fft={"enabled": True, "tracks": str(tracks), "bins": WINDOW // 2 + 1})
    done = run_mpi(1, "run", config, check=False)
    assert done.returncode == 2, done.stderr
    assert "fft.bins" in done.stderr
