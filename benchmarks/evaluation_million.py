"""``magnetdml.evaluate`` at a million points: wall time and peak memory (goal: under 4 GB).

Data: 1,000,000 float32 points in 128-d, 1000 Gaussian classes of 1000 points (the layout of
``evaluation_speed.py``), generated in chunks so no float64 copy of the full set exists. Each
part runs in its own child process, which reports the wall time of its ``evaluate`` call and
its CPU time (one thread: the time on an idle machine) and its peak resident memory
(``resource.getrusage``; the 512 MB of embeddings included):

- ``clustering_knc``: every query is one of the 1M points: ``nmi``, ``ami``, ``ari``, ``f1``
  (k-means++ k-means into 1000 clusters) and ``knc_error``, ``knc_error_at_5`` against the
  class means (one centre per class, sigma^2 = the intra-class variance);
- ``neighbours_10k``: 10,000 held-out queries against the 1M-point reference: every neighbour
  metric (soft kNN errors, precision@1, R-precision / MAP@R with R = 1000, Recall@1..8);
- ``neighbours_full`` (only with ``--full``): the same metrics with all 1M points as queries
  against themselves. Exact search is ``N^2 D`` (2.6e14 flops): hours on 2 cores. Without
  ``--full`` its time is estimated as 100 x ``neighbours_10k`` (the search dominates and is
  linear in the number of queries; memory is bounded by the query chunk, not by N).

Resumable from its results file; ``--quick`` runs 20k points into the temp folder.

    nice python benchmarks/evaluation_million.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

RESULTS = Path(__file__).parent / "results" / "evaluation_million.json"
PER_CLASS, DIM, QUERIES = 1000, 128, 10_000
THREADS = int(os.environ.get("BENCH_THREADS", "1"))  # see evaluation_speed.py: THREADS
PARTS = {  # cheapest first, so an interrupted run still has the neighbour metrics
    "neighbours_10k": [
        "knn_error",
        "error_at_5",
        "precision_at_1",
        "r_precision",
        "map_at_r",
        "recall_at_1",
        "recall_at_2",
        "recall_at_4",
        "recall_at_8",
    ],
    "clustering_knc": ["nmi", "ami", "ari", "f1", "knc_error", "knc_error_at_5"],
}
PARTS["neighbours_full"] = PARTS["neighbours_10k"]


def make_data(n: int, seed: int, classes: int, chunk: int = 100_000):
    """``(n, DIM)`` float32 points of ``classes`` Gaussian classes (centres from seed 0)."""
    centres = np.random.default_rng(0).normal(size=(classes, DIM)).astype(np.float32)
    spread = np.random.default_rng(1).uniform(0.9, 1.6, size=classes).astype(np.float32)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n) if seed else np.repeat(np.arange(classes), n // classes)
    x = np.empty((n, DIM), np.float32)
    for start in range(0, n, chunk):
        y = labels[start : start + chunk]
        noise = rng.standard_normal((len(y), DIM), dtype=np.float32)
        x[start : start + chunk] = centres[y] + spread[y, None] * noise
    return x, labels


def child(part: str, n: int, queries_n: int = QUERIES) -> dict:
    from magnetdml.evaluation import estimate_variance, evaluate

    classes = n // PER_CLASS
    x, y = make_data(n, seed=0, classes=classes)
    kwargs = {}
    if part == "clustering_knc":
        counts = np.bincount(y, minlength=classes)[:, None]
        means = np.add.reduceat(x, np.arange(0, n, PER_CLASS), axis=0) / counts
        kwargs = {
            "index": SimpleNamespace(
                centroids_=means.astype(np.float32), centroid_labels_=np.arange(classes)
            ),
            "variance": estimate_variance(x, y),
        }
        queries, labels = x, y
    elif part == "neighbours_10k":
        queries, labels = make_data(min(queries_n, n), seed=7, classes=classes)
        kwargs = {"reference": x, "reference_labels": y}
    else:
        queries, labels = x, y
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    metrics = evaluate(queries, labels, metrics=PARTS[part], seed=0, **kwargs)
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime - cpu,
        "queries": len(queries),
        "reference": n,
        "rss_before_mb": before,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "metrics": metrics,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k points, temp-folder results")
    parser.add_argument("--full", action="store_true", help="also 1M x 1M neighbour metrics")
    parser.add_argument("--force", action="store_true", help="rerun finished parts")
    parser.add_argument(
        "--queries",
        type=int,
        default=QUERIES,
        help="held-out queries of the neighbours part (default 10,000)",
    )
    parser.add_argument(
        "--parts",
        nargs="*",
        choices=list(PARTS),
        default=None,
        help="parts to run (default: all but neighbours_full unless --full)",
    )
    parser.add_argument("--child", nargs=3, metavar=("PART", "N", "Q"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), int(args.child[2]))))
        return
    n = 20_000 if args.quick else 1_000_000
    path = Path(tempfile.gettempdir()) / "evaluation_million_quick.json" if args.quick else RESULTS
    results = json.loads(path.read_text()) if path.exists() and not args.force else {}
    results.update(
        {
            "n": n,
            "dim": DIM,
            "classes": n // PER_CLASS,
            "threads": THREADS,
            "cpus": os.cpu_count(),
            "command": "python benchmarks/evaluation_million.py " + " ".join(sys.argv[1:]),
        }
    )
    parts = results.setdefault("parts", {})
    env = dict(
        os.environ,
        **{v: str(THREADS) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
    )
    chosen = args.parts or [p for p in PARTS if args.full or p != "neighbours_full"]
    for part in chosen:
        if part in parts:
            continue
        print(f"{part} ...", flush=True)
        done = subprocess.run(
            [sys.executable, __file__, "--child", part, str(n), str(args.queries)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{part} failed:\n{done.stderr[-3000:]}")
        parts[part] = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"  {parts[part]['seconds']:.1f} s, peak RSS {parts[part]['peak_rss_mb']:.0f} MB",
            flush=True,
        )
        if "neighbours_10k" in parts:
            results["neighbours_full_estimated_seconds"] = (
                parts["neighbours_10k"]["seconds"] * n / parts["neighbours_10k"]["queries"]
            )
        results["max_peak_rss_mb"] = max(p["peak_rss_mb"] for p in parts.values())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
