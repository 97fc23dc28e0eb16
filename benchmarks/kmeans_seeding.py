"""How many points k-means++ needs per centre: clustering quality and seeding time.

``evaluate`` clusters the query embeddings into one centre per class (NMI, AMI, ARI, F1);
greedy k-means++ seeding costs O(sample x k x D x (2 + ln k)) and at 100k points in 1,000
classes was the largest cost after the neighbour search. faiss (and pytorch-metric-learning
through it) trains k-means on at most 256 points per centre and scikit-learn's MiniBatchKMeans
seeds on 3 x k points; the Lloyd steps that follow use every point. This measures what seeding
on a smaller sample costs in quality, per sample size, over seeds:

- ``synthetic-100k``: the embeddings of ``evaluation_speed.py`` (100k x 64, 1,000 overlapping
  Gaussian classes of 100);
- ``mnist-test`` / ``fashion-mnist-test``: the 10k test images as raw pixels (784-d, 10 classes
  of ~1,000: the regime where the sample is much smaller than the data).

For each: NMI and AMI against the labels, k-means inertia (relative to seeding on every point)
and the seeding CPU time (one thread). Results: ``benchmarks/results/kmeans_seeding.json``.

    python benchmarks/kmeans_seeding.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from magnetdml.clustering import kmeans as km
from magnetdml.evaluation.mutual_information import adjusted_mutual_info

RESULTS = Path(__file__).parent / "results" / "kmeans_seeding.json"
PER_CENTRE = (8, 16, 32, 64, 128, 256, None)  # None: seed on every point
SEEDS = (0, 1, 2)


def datasets(data_root: Path):
    from evaluation_speed import make_data

    from magnetdml.data import load_dataset

    yield "synthetic-100k", *make_data(100_000, 64)
    for name in ("mnist", "fashion-mnist"):
        test = load_dataset(name, data_dir=data_root / name).test
        x, _ = test.get_batch(np.arange(len(test)))  # normalised pixels
        yield f"{name}-test", x.reshape(len(test), -1).numpy(), test.labels


def measure(x: np.ndarray, y: np.ndarray, per_centre: int | None, seed: int) -> dict:
    from sklearn.metrics import normalized_mutual_info_score

    k = len(np.unique(y))
    cap = per_centre or -(-x.shape[0] // k)  # every point
    start = time.process_time()
    init = km._plusplus_seeds(x, k, seed, cap)
    seeding = time.process_time() - start
    result = km.kmeans(x, k, seed=seed, init=init)
    return {
        "nmi": float(normalized_mutual_info_score(y, result.assignments)),
        "ami": adjusted_mutual_info(y, result.assignments),
        "inertia": result.inertia,
        "seeding_cpu_seconds": seeding,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} cpus, 1 thread"
    table = results.setdefault("datasets", {})
    with threadpool_limits(1):
        import faiss

        faiss.omp_set_num_threads(1)
        for name, x, y in datasets(args.data_root):
            rows = table.setdefault(
                name,
                {
                    "n": int(x.shape[0]),
                    "dim": int(x.shape[1]),
                    "k": int(len(np.unique(y))),
                    "runs": {},
                },
            )["runs"]
            for per_centre in PER_CENTRE:
                key = str(per_centre or "all")
                if key in rows:
                    continue  # resumable
                runs = [measure(x, y, per_centre, seed) for seed in SEEDS]
                rows[key] = {m: [r[m] for r in runs] for m in runs[0]}
                print(
                    name,
                    key,
                    {m: round(float(np.mean(v)), 4) for m, v in rows[key].items()},
                    flush=True,
                )
                RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    for entry in table.values():
        full = np.mean(entry["runs"]["all"]["inertia"])
        for row in entry["runs"].values():
            seconds = row["seeding_cpu_seconds"]
            row["summary"] = {
                "nmi_mean": float(np.mean(row["nmi"])),
                "ami_mean": float(np.mean(row["ami"])),
                "inertia_vs_all": float(np.mean(row["inertia"]) / full),
                "seeding_cpu_seconds_mean": float(np.mean(seconds)),
            }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
