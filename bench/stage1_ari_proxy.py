"""Quality of stage-1 embeddings on the labelled real protein sets, before stage 2 exists to judge
them: scikit-learn spectral clustering on the symmetrised cosine kNN graph (the same kind of graph
embsolve builds), adjusted Rand index against the labels. A proxy, not embsolve's own result.

    python bench/stage1_ari_proxy.py DATASET_DIR [--k 10] [--csv FILE --label NAME]
"""

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.cluster import SpectralClustering
from sklearn.metrics import adjusted_rand_score


def read(directory: Path):
    manifest = json.loads((directory / "manifest.json").read_text())
    rows, labels = [], []
    for entry in manifest["files"]:
        table = pq.read_table(directory / entry["path"], columns=["embedding", manifest["label_column"]])
        for chunk in table.column("embedding").chunks:
            storage = chunk.storage if isinstance(chunk.type, pa.ExtensionType) else chunk
            rows.append(storage.flatten().to_numpy(zero_copy_only=False).reshape(len(chunk), -1))
        labels += table.column(manifest["label_column"]).to_pylist()
    return np.concatenate(rows).astype(np.float64), np.array(labels), manifest


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--csv", type=Path)
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    matrix, labels, manifest = read(args.dataset)
    n_clusters = len(np.unique(labels))
    producer = manifest["producer"]
    for assign in ("discretize", "cluster_qr", "kmeans"):
        model = SpectralClustering(n_clusters=n_clusters, affinity="nearest_neighbors", n_neighbors=args.k,
                                   assign_labels=assign, random_state=0)
        ari = adjusted_rand_score(labels, model.fit_predict(matrix))
        row = dict(label=args.label, n_rows=len(labels), n_labels=n_clusters, k_mer=producer["k"],
                   method=producer["method"], dim=manifest["dim"], knn_k=args.k, assign_labels=assign,
                   ari_spectral=round(ari, 4))
        print(row)
        if args.csv:
            new = not args.csv.exists()
            with open(args.csv, "a", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(row))
                if new:
                    writer.writeheader()
                writer.writerow(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
