"""kNC against exact soft kNN at scale (paper §3.3): prediction throughput and error.

kNC's cost grows with the number of cluster centres, soft kNN's with the number of reference
examples. For synthetic 64-d embeddings of 1,000 classes (each 4 Gaussian modes) with
N = 100k and 1M reference examples, it fits a ``ClusterIndex`` (K = 4 per class, 4,000
centres) and a ``SoftKNN`` (k = 128, exact faiss search) on the same reference set, then
classifies the same 2,000 held-out queries with both in one process, one thread, alternately
``--repeats`` times: queries per second of each (medians), their ratio, and their errors.
``sigma^2`` for kNC is the index's ``cluster_variance``, as evaluation uses for losses without
a running one. Results go to
``benchmarks/results/knc_scale.json`` (a size already there is skipped: resumable).

    nice python benchmarks/knc_scale.py               # N = 100k and 1M
    python benchmarks/knc_scale.py --sizes 20000      # a quick check
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from magnetdml import ClusterIndex, KNearestClusters, SoftKNN
from magnetdml.evaluation import cluster_variance

RESULTS = Path(__file__).parent / "results"
DIM, CLASSES, MODES, K, QUERIES, NEIGHBOURS = 64, 1_000, 4, 4, 2_000, 128


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of ``CLASSES`` classes, each a mixture of ``MODES`` unit Gaussians whose
    centres are spread with standard deviation 1.2, within-mode noise 0.8 (the classes overlap)."""
    rng = np.random.default_rng(seed)
    centres = (1.2 * rng.standard_normal((CLASSES * MODES, DIM))).astype(np.float32)
    labels = rng.permutation(np.arange(n) % CLASSES)
    x = np.empty((n, DIM), dtype=np.float32)
    for lo in range(0, n, 100_000):
        y = labels[lo : lo + 100_000]
        mode = y * MODES + rng.integers(0, MODES, y.size)
        x[lo : lo + y.size] = (
            centres[mode] + rng.standard_normal((y.size, DIM), dtype=np.float32) * 0.8
        )
    return x, labels


def timed(fn) -> tuple[object, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def run_one(n: int, repeats: int) -> dict:
    x, y = synthetic(n + QUERIES)
    reference, labels, queries, truth = x[:n], y[:n], x[n:], y[n:]
    index, fit_index = timed(lambda: ClusterIndex(clusters_per_class=K).fit(reference, labels))
    knc = KNearestClusters(neighbours=NEIGHBOURS).fit(index, cluster_variance(reference, index))
    knn, fit_knn = timed(lambda: SoftKNN(neighbours=NEIGHBOURS).fit(reference, labels))
    knc.predict(queries[:100])  # warm-up of both searches
    knn.predict(queries[:100])
    # alternately, so that both see the same machine load; medians compared
    knc_times, knn_times = [], []
    for _ in range(repeats):
        knc_pred, seconds = timed(lambda: knc.predict(queries))
        knc_times.append(seconds)
        knn_pred, seconds = timed(lambda: knn.predict(queries))
        knn_times.append(seconds)
    knc_time, knn_time = float(np.median(knc_times)), float(np.median(knn_times))
    ratios = sorted(b / a for a, b in zip(knc_times, knn_times, strict=True))
    return {
        "reference": n,
        "centres": int(index.n_clusters_),
        "queries": QUERIES,
        "repeats": repeats,
        "knc_seconds": knc_times,
        "knn_seconds": knn_times,
        "knc_queries_per_second": QUERIES / knc_time,
        "knn_queries_per_second": QUERIES / knn_time,
        "knc_speedup": knn_time / knc_time,
        "knc_speedup_per_round_min_max": [ratios[0], ratios[-1]],
        "knc_error": float(np.mean(knc_pred != truth)),
        "knn_error": float(np.mean(knn_pred != truth)),
        "index_fit_seconds": fit_index,
        "knn_fit_seconds": fit_knn,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="100000,1000000", help="comma-separated reference set sizes"
    )
    parser.add_argument("--out", default=str(RESULTS / "knc_scale.json"))
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds per size")
    parser.add_argument("--force", action="store_true", help="rerun sizes already there")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import faiss

    faiss.omp_set_num_threads(1)
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() and not args.force else {"results": []}
    report["command"] = "python benchmarks/knc_scale.py " + " ".join(sys.argv[1:])
    report.update(
        {
            "machine": platform.processor() or platform.machine(),
            "threads": 1,
            "dim": DIM,
            "classes": CLASSES,
            "clusters_per_class": K,
            "neighbours": NEIGHBOURS,
        }
    )
    done = {row["reference"] for row in report["results"]}
    for n in (int(s) for s in args.sizes.split(",")):
        if n in done:
            print(f"N = {n}: in {out} already, skipped")
            continue
        row = run_one(n, args.repeats)
        report["results"].append(row)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")  # after each: resumable
        print(
            f"N = {n:>9,}: kNC {row['knc_queries_per_second']:8.0f} q/s, error "
            f"{100 * row['knc_error']:.2f}% | soft kNN {row['knn_queries_per_second']:8.0f} "
            f"q/s, error {100 * row['knn_error']:.2f}% | kNC {row['knc_speedup']:.1f}x faster"
        )


if __name__ == "__main__":
    main()
