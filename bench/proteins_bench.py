"""Real proteins through both stages, with labels: stage 1 (Ray Data, protein 3-mers, `hash`,
D = 4096) and stage 2 (`embsolve run`: cosine kNN, k = 10, similarity weights, spectral clustering
with n_clusters = n_eigs = the number of labels, connected components). Records the ARI of the
spectral labels and of the components against the labels, and the time of each stage.

Sets (made by `scripts/fetch_data.sh hmmer-examples kaptive-data`):
  pfam8          the 8 Pfam seed families of Debian hmmer-examples (321 proteins)
  kaptive_ab20   A. baumannii capsule-locus proteins of the 48 genes seen at least 20 times
                 (3,503 proteins, Debian kaptive-data)

Stage 2 runs once per spectral seed (--seeds; the seed drives the Lanczos start and k-means++).
When the kNN graph has more connected components than n_eigs, the eigenvalue 1 fills every
computed slot and embsolve takes the indicator vectors of the n_eigs largest components (rows of
the others embed as zero), so the spectral labels no longer depend on the seed there.

Usage: python bench/proteins_bench.py --out bench/runs/DATE-MACHINE [--ranks 2] [--seeds 0 1 2]
Writes proteins.csv.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("EMBSOLVE_BIN", ROOT / "target" / "release" / "embsolve"))
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "EMBSOLVE_NO_PROGRESS": "1",
    "RAY_AUTH_MODE": "disabled",
}
SETS = {"pfam8": "family", "kaptive_ab20": "gene"}


def sh(cmd, **kw):
    env = dict(os.environ, **MPI_ENV)
    env["PYTHONPATH"] = str(ROOT / "ray") + os.pathsep + env.get("PYTHONPATH", "")
    start = time.perf_counter()
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=ROOT,
                          **kw)
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--knn-k", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not all((ROOT / "data" / name / "proteins.fasta").exists() for name in SETS):
        sh(["scripts/fetch_data.sh", "hmmer-examples", "kaptive-data"])

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, column in SETS.items():
            source = ROOT / "data" / name
            header, *lines = (source / "labels.tsv").read_text().splitlines()
            at = header.split("\t").index(column)
            n_labels = len({line.split("\t")[at] for line in lines if line})
            embedded = tmp / name
            stage1_s = sh([sys.executable, "-m", "embsolve_ray", "embed", "--input",
                           source / "proteins.fasta", "--alphabet", "protein", "--k", "3", "--method",
                           "hash", "--dim", "4096", "--labels", source / "labels.tsv",
                           "--label-column", column, "--out", embedded])
            manifest = json.loads((embedded / "manifest.json").read_text())
            for seed in args.seeds:
                out = tmp / f"{name}_{seed}"
                config = tmp / f"{name}_{seed}.toml"
                config.write_text(
                    f'[input]\npath = "{embedded}"\nlabel_column = "label"\n'
                    f'[output]\ndir = "{out}"\nwrite_knn = false\ncheckpoint = false\n'
                    f'[knn]\nk = {args.knn_k}\nmetric = "cosine"\n[graph]\nweight = "similarity"\n'
                    f'[pagerank]\nenabled = false\n'
                    f'[spectral]\nn_eigs = {n_labels}\nn_clusters = {n_labels}\nseed = {seed}\n')
                stage2_s = sh(["mpirun", "--bind-to", "none", "-n", args.ranks, BIN, "run", config])
                summary = json.loads((out / "run.json").read_text())
                results = summary["results"]
                row = dict(set=name, rows=manifest.get("n_rows", ""), labels=n_labels, k_mer=3,
                           method="hash", dim=4096, knn_k=args.knn_k, ranks=args.ranks, seed=seed,
                           ari_spectral=results["ari"]["spectral"],
                           ari_components=results["ari"]["components"],
                           n_components=results["n_components"],
                           lanczos_iterations=results["lanczos_iterations"],
                           lanczos_converged=results["lanczos_converged"],
                           stage1_s=round(stage1_s, 2), stage2_wall_s=round(stage2_s, 2),
                           **{f"{phase}_s": round(times["max_s"], 3)
                              for phase, times in summary["phases"].items()
                              if phase in ("read", "knn", "graph", "components", "spectral")})
                rows.append(row)
                print(f"{name:<13} seed {seed}: ARI spectral {row['ari_spectral']:.4f} components "
                      f"{row['ari_components']:.4f} ({row['n_components']} components), stage 1 "
                      f"{stage1_s:.1f} s, stage 2 {stage2_s:.1f} s (spectral {row['spectral_s']} s, "
                      f"{row['lanczos_iterations']} Lanczos steps)", flush=True)

    path = args.out / "proteins.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
