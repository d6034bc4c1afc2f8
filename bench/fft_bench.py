"""FFT phase benchmark: embsolve's windowed power spectra against a numpy rfft STFT of the same
windows, in the same run on the same file, plus detection quality of the period-3 score.

1. Speed and agreement: a random DNA sequence of --mbp Mbp (one HDF5 track). numpy: indicator
   channels of every window (window, step), rfft, summed power, period-3 score and band means,
   chunked to bound memory, single-threaded. embsolve: `run` with [fft] on the same file at each
   (ranks, threads) of --configs; its time is run.json phases.fft.max_s (scan + read + spectra +
   reductions, max over ranks). Agreement: max abs / relative error of the scores and of
   /fft/mean_power against numpy in float64.
2. Detection: `embsolve generate --kind tracks` (planted coding segments), AUC of the period-3
   score of coding windows (>= 90% inside a segment) against background windows (<= 10%).
3. Real genome: Corynebacterium diphtheriae NCTC11397 (NZ_LN831026.1, 2.46 Mbp), the test genome
   shipped in the `pyrodigal` wheel (pinned in scripts/venv.sh), with the genes pyrodigal predicts
   on it (single-genome mode: trained on the genome, then find_genes). The FASTA becomes one HDF5
   track (A=0 C=1 G=2 T=3, other 4); for each of --genome-windows, `embsolve run` with [fft]
   and the AUC of the period-3 score of coding windows (>= 90% of the window inside a predicted
   gene, either strand) against non-coding windows (<= 10%); numpy's scores of the same windows
   check the values.

Writes fft_speed.csv, fft_detection.csv and fft_genome.csv to --out (the parts chosen by --parts).
"""

import argparse
import csv
import gzip
import importlib.resources
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "EMBSOLVE_NO_PROGRESS": "1",
}


def sh(cmd, **kw):
    env = dict(os.environ)
    env.update(MPI_ENV)
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, **kw)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def numpy_stft(tokens, window, step, bins, chunk=8192):
    """Period-3 scores and the mean band power of every window, as embsolve defines them."""
    frames_all = np.lib.stride_tricks.sliding_window_view(tokens, window)[::step]
    n_freqs = window // 2 + 1
    p3 = (window + 1) // 3
    n_nonzero = n_freqs - 1  # bands cover frequencies 1..=window/2; the DC bin is in none
    edges = [(1 + b * n_nonzero // bins, 1 + (b + 1) * n_nonzero // bins) for b in range(bins)]
    scores = np.empty(len(frames_all))
    band_total = np.zeros(bins)
    for lo in range(0, len(frames_all), chunk):
        frames = frames_all[lo:lo + chunk]
        power = np.zeros((len(frames), n_freqs))
        for channel in range(4):
            spectrum = np.fft.rfft((frames == channel).astype(np.float64), axis=1)
            power += spectrum.real ** 2 + spectrum.imag ** 2
        power /= window
        power[:, 0] = 0.0
        scores[lo:lo + chunk] = power[:, p3] / power[:, 1:].mean(axis=1)
        for b, (a, z) in enumerate(edges):
            band_total[b] += power[:, a:z].mean(axis=1).sum()
    return scores, band_total / len(frames_all)


def embsolve_run(binary, work, name, tracks, ranks, threads, window, step, bins):
    emb = work / "emb.npy"
    if not emb.exists():
        sh([binary, "generate", "--kind", "blobs", "--n", 64, "--dim", 4, "--clusters", 2,
            "--format", "npy", "--out", emb])
    out = work / name
    config = work / f"{name}.toml"
    config.write_text(f"""[run]
threads = {threads}
[input]
path = "{emb}"
[knn]
k = 4
[pagerank]
enabled = false
[spectral]
enabled = false
[fft]
enabled = true
tracks = "{tracks}"
window = {window}
step = {step}
bins = {bins}
[output]
dir = "{out}"
write_knn = false
checkpoint = false
""")
    sh(["mpirun", "--oversubscribe", "--bind-to", "none", "-n", ranks, binary, "run", config])
    summary = json.loads((out / "run.json").read_text())
    with h5py.File(out / "results.h5", "r") as f:
        result = {key: f[f"fft/{key}"][:] for key in ["period3/seq", "period3/start", "period3/score", "mean_power"]}
    result["seconds"] = summary["phases"]["fft"]["max_s"]
    return result


def coding_labels(seq, start, truth, window):
    labels = np.full(len(seq), -1)
    by_seq = {}
    for s, lo, hi in truth:
        by_seq.setdefault(int(s), []).append((int(lo), int(hi)))
    for i, (s, st) in enumerate(zip(seq, start)):
        covered = sum(max(0, min(hi, st + window) - max(lo, st)) for lo, hi in by_seq.get(int(s), []))
        labels[i] = 1 if covered >= 0.9 * window else (0 if covered <= 0.1 * window else -1)
    return labels


GENOME_FILE = "GCF_001457455.1_NCTC11397_genomic.fna.gz"
GENOME_NAME = "Corynebacterium diphtheriae NCTC11397 (GCF_001457455.1)"


def read_fasta(handle):
    """(name, sequence) of every record of a FASTA text stream."""
    records, name, parts = [], None, []
    for line in handle:
        line = line.strip()
        if line.startswith(">"):
            if name is not None:
                records.append((name, "".join(parts)))
            name, parts = line[1:], []
        elif line:
            parts.append(line)
    if name is not None:
        records.append((name, "".join(parts)))
    return records


def dna_tokens(sequence):
    """SPEC token encoding of DNA: A=0 C=1 G=2 T=3 (either case), anything else 4."""
    table = np.full(256, 4, dtype=np.uint8)
    for token, base in enumerate("ACGT"):
        table[ord(base)] = table[ord(base.lower())] = token
    return table[np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)]


def load_genome():
    """The C. diphtheriae genome of the pyrodigal wheel and pyrodigal's genes on it: records
    [(name, sequence)] and genes [(record, begin, end)] as 0-based half-open intervals."""
    try:
        import pyrodigal
    except ImportError:
        raise SystemExit("fft_bench: the genome part needs pyrodigal (pinned in scripts/venv.sh; run "
                         "scripts/venv.sh, which installs it from PyPI) or --parts speed,detection")
    path = importlib.resources.files("pyrodigal") / "tests" / "data" / GENOME_FILE
    if not path.is_file():
        raise SystemExit(f"fft_bench: pyrodigal {pyrodigal.__version__} has no {GENOME_FILE} in its "
                         f"tests/data (scripts/venv.sh pins the version that ships it)")
    with path.open("rb") as raw, gzip.open(raw, "rt") as text:
        records = read_fasta(text)
    finder = pyrodigal.GeneFinder()
    finder.train(*[sequence.encode("ascii") for _, sequence in records])
    genes = [(index, gene.begin - 1, gene.end)
             for index, (_, sequence) in enumerate(records)
             for gene in finder.find_genes(sequence.encode("ascii"))]
    return records, genes, pyrodigal.__version__


def genome_part(args, work):
    records, genes, pyrodigal_version = load_genome()
    tokens_per_record = [dna_tokens(sequence) for _, sequence in records]
    lengths = np.array([len(t) for t in tokens_per_record], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tracks = work / "genome.h5"
    with h5py.File(tracks, "w") as f:
        f["tokens"] = np.concatenate(tokens_per_record)
        f["offsets"] = offsets
    # Per record: 1 where a position lies inside a predicted gene (either strand), and its prefix sums.
    coding_prefix = []
    for index, length in enumerate(lengths):
        inside = np.zeros(length, dtype=bool)
        for record, begin, end in genes:
            if record == index:
                inside[begin:end] = True
        coding_prefix.append(np.concatenate([[0], np.cumsum(inside)]))
    coding_fraction = sum(int(p[-1]) for p in coding_prefix) / int(lengths.sum())
    print(f"genome: {GENOME_NAME}, {len(records)} record(s), {int(lengths.sum())} bp, {len(genes)} genes "
          f"(pyrodigal {pyrodigal_version}), {coding_fraction:.1%} coding")
    ranks, threads = map(int, args.genome_config.split("x"))
    rows = []
    for window in map(int, args.genome_windows.split(",")):
        best = None
        for repeat in range(args.repeats):
            result = embsolve_run(args.bin, work, f"genome_w{window}_{repeat}", tracks, ranks, threads,
                                  window, args.step, args.bins)
            if best is None or result["seconds"] < best["seconds"]:
                best = result
        seq, start = best["period3/seq"], best["period3/start"]
        score = best["period3/score"].astype(np.float64)
        # Check the scores against numpy on the same windows (one record at a time).
        t0 = time.perf_counter()
        reference = np.concatenate([numpy_stft(t, window, args.step, args.bins)[0]
                                    for t in tokens_per_record if len(t) >= window])
        numpy_s = time.perf_counter() - t0
        assert len(reference) == len(score), (len(reference), len(score))
        covered = np.array([coding_prefix[s][st + window] - coding_prefix[s][st] for s, st in zip(seq, start)])
        labels = np.where(covered >= 0.9 * window, 1, np.where(covered <= 0.1 * window, 0, -1))
        keep = labels >= 0
        row = {"genome": GENOME_NAME, "source": f"pyrodigal {pyrodigal_version} wheel: tests/data/{GENOME_FILE}",
               "genes": f"pyrodigal {pyrodigal_version} single mode", "length_bp": int(lengths.sum()),
               "n_records": len(records), "n_genes": len(genes), "coding_fraction": round(coding_fraction, 4),
               "window": window, "step": args.step, "windows": len(score),
               "coding_windows": int((labels == 1).sum()), "noncoding_windows": int((labels == 0).sum()),
               "auc": round(roc_auc_score(labels[keep], score[keep]), 4),
               "median_score_coding": round(float(np.median(score[labels == 1])), 3),
               "median_score_noncoding": round(float(np.median(score[labels == 0])), 3),
               "max_rel_err_score_vs_numpy": float(f"{(np.abs(score - reference) / np.maximum(reference, 1e-12)).max():.3g}"),
               "ranks": ranks, "threads": threads, "embsolve_fft_s": round(best["seconds"], 4),
               "numpy_s": round(numpy_s, 4), "load_avg_1m": round(os.getloadavg()[0], 1)}
        rows.append(row)
        print({k: v for k, v in row.items() if k not in ("genome", "source", "genes")})
    with open(Path(args.out) / "fft_genome.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def speed_part(args, work, out_dir):
    """1. Speed and agreement on one random sequence."""
    n_tokens = int(args.mbp * 1e6)
    tokens = np.random.default_rng(args.seed).integers(0, 4, size=n_tokens).astype(np.uint8)
    tracks = work / "random.h5"
    with h5py.File(tracks, "w") as f:
        f["tokens"] = tokens
        f["offsets"] = np.array([0, n_tokens], dtype=np.int64)
    n_windows = (n_tokens - args.window) // args.step + 1
    numpy_times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ref_scores, ref_mean_power = numpy_stft(tokens, args.window, args.step, args.bins)
        numpy_times.append(time.perf_counter() - t0)
    numpy_s = min(numpy_times)
    rows = [{"impl": "numpy.fft.rfft", "load_avg_1m": round(os.getloadavg()[0], 1), "ranks": 1, "threads": 1, "n_tokens": n_tokens,
             "n_windows": n_windows, "seconds": round(numpy_s, 4),
             "windows_per_s": round(n_windows / numpy_s), "speedup_vs_numpy": 1.0,
             "max_abs_err_score": 0.0, "max_rel_err_score": 0.0, "max_rel_err_mean_power": 0.0, "max_abs_err_mean_power": 0.0}]
    print(f"numpy: {numpy_s:.3f} s for {n_windows} windows")
    for config in args.configs.split(","):
        ranks, threads = map(int, config.split("x"))
        best = None
        for repeat in range(args.repeats):
            result = embsolve_run(args.bin, work, f"speed_{ranks}x{threads}_{repeat}", tracks, ranks,
                                  threads, args.window, args.step, args.bins)
            if best is None or result["seconds"] < best["seconds"]:
                best = result
        scores = best["period3/score"].astype(np.float64)
        assert len(scores) == n_windows, (len(scores), n_windows)
        abs_err = np.abs(scores - ref_scores)
        power_err = np.abs(best["mean_power"] - ref_mean_power)
        row = {"impl": "embsolve", "load_avg_1m": round(os.getloadavg()[0], 1), "ranks": ranks, "threads": threads, "n_tokens": n_tokens,
               "n_windows": n_windows, "seconds": round(best["seconds"], 4),
               "windows_per_s": round(n_windows / best["seconds"]),
               "speedup_vs_numpy": round(numpy_s / best["seconds"], 2),
               "max_abs_err_score": float(f"{abs_err.max():.3g}"),
               "max_rel_err_score": float(f"{(abs_err / np.maximum(ref_scores, 1e-12)).max():.3g}"),
               "max_rel_err_mean_power": float(f"{(power_err / ref_mean_power).max():.3g}"),
               "max_abs_err_mean_power": float(f"{power_err.max():.3g}")}
        rows.append(row)
        print(row)
    with open(out_dir / "fft_speed.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def detection_part(args, work, out_dir):
    """2. Detection of planted coding segments."""
    planted = work / "planted"
    sh([args.bin, "generate", "--kind", "tracks", "--n", 40, "--length", 50_000, "--seed", args.seed + 1,
        "--format", "parquet", "--shards", 4, "--out", planted])
    result = embsolve_run(args.bin, work, "planted", planted, 2, 1, args.window, args.step, args.bins)
    truth = np.loadtxt(planted / "coding.csv", delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    labels = coding_labels(result["period3/seq"], result["period3/start"], truth, args.window)
    score = result["period3/score"]
    keep = labels >= 0
    auc = roc_auc_score(labels[keep], score[keep])
    detection = [{"dataset": "synthetic planted coding (generate --kind tracks, 40 x ~50 kbp)",
                  "windows": len(score), "coding_windows": int((labels == 1).sum()),
                  "noncoding_windows": int((labels == 0).sum()), "auc": round(auc, 4)}]
    print(detection[0])
    with open(out_dir / "fft_detection.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(detection[0]))
        writer.writeheader()
        writer.writerows(detection)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default=str(ROOT / "target" / "release" / "embsolve"))
    parser.add_argument("--out", required=True, help="directory for the CSV files")
    parser.add_argument("--mbp", type=float, default=10.0)
    parser.add_argument("--window", type=int, default=240)
    parser.add_argument("--step", type=int, default=60)
    parser.add_argument("--bins", type=int, default=64)
    parser.add_argument("--configs", default="1x1,1x2,2x1", help="RANKSxTHREADS,...")
    parser.add_argument("--repeats", type=int, default=3, help="best of N for every timing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", default="speed,detection,genome", help="which parts to run")
    parser.add_argument("--genome-windows", default="240,360,480,720",
                        help="window lengths of the genome part (multiples of 3 put frequency 1/3 on a bin)")
    parser.add_argument("--genome-config", default="2x1", help="RANKSxTHREADS of the genome runs")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    unknown = parts - {"speed", "detection", "genome"}
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)} (known: speed, detection, genome)")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="fft_bench_") as tmp:
        work = Path(tmp)
        if "speed" in parts:
            speed_part(args, work, out_dir)
        if "detection" in parts:
            detection_part(args, work, out_dir)
        if "genome" in parts:
            genome_part(args, work)


if __name__ == "__main__":
    main()
