"""Why is Magnet's kNC error above its own soft-kNN error here (the paper finds the reverse)?

For each finished run folder given (with its ``checkpoint.pt``: ``magnetdml experiment ...
--keep-checkpoints``), the test set is classified from the same embeddings by

* kNC as trained: the run's final index (``K`` centres per class) and the running average of
  the training batch variance ``sigma^2`` (paper §3.3; what ``metrics.json`` reports); for a
  loss without an index, one fitted on the final embeddings with ``sigma^2`` estimated
  around its centres, as training's evaluation does;
* kNC with ``sigma^2`` scaled by 1/16 ... 16, and with ``sigma^2`` re-estimated from the
  eval-mode training embeddings around their centres -- is the lengthscale the problem?
* kNC over an index re-fitted with more centres per class (``K`` = 16, 64) on the same
  embeddings -- do ``K`` centres per class underfit a class of 6,000 examples?
* soft kNN (``k = 128``) and 1-NN over all training embeddings.

    python benchmarks/knc_gap.py benchmarks/results/experiments/clusters/fashion-mnist-k*-s0

Writes ``benchmarks/results/knc_gap.json`` (resumable: runs already there are skipped).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from magnetdml.clustering import ClusterIndex
from magnetdml.evaluation import KNearestClusters, cluster_variance, evaluate
from magnetdml.training.runs import load_run

RESULTS = Path(__file__).parent / "results" / "knc_gap.json"
SCALES = (1 / 16, 1 / 4, 1, 4, 16)
REFIT_KS = (16, 64)


def knc_error(
    index, variance: float, queries: np.ndarray, labels: np.ndarray, neighbours: int
) -> float:
    knc = KNearestClusters(neighbours=neighbours).fit(index, variance)
    return float(np.mean(knc.predict(queries) != labels))


def measure(run_dir: Path) -> dict:
    run = load_run(run_dir)
    reference, queries = run.reference_embeddings(), run.embed(run.splits.test)
    labels, train_labels = run.splits.test.labels, run.splits.train.labels
    neighbours = run.config.eval.neighbours
    # a loss without an index (softmax, triplet) is scored as training scores it: an index
    # fitted on the final embeddings, sigma^2 estimated around its centres
    classifier = run.classifier()  # fit_knc: as training scored the run
    index, sigma2 = classifier.index_, classifier.lengthscale_
    eval_sigma2 = cluster_variance(reference, index)
    out = {
        "loss": run.config.loss.name,
        "k": int(run.config.index.clusters_per_class),
        "method": run.config.index.method,
        "centres": int(len(index.centroids_)),
        "sigma2_as_trained": sigma2,
        "sigma2_eval": eval_sigma2,
        "knc_as_trained": knc_error(index, sigma2, queries, labels, neighbours),
        "knc_eval_sigma2": knc_error(index, eval_sigma2, queries, labels, neighbours),
        "knc_sigma2_scaled": {
            f"{s:g}": knc_error(index, s * sigma2, queries, labels, neighbours) for s in SCALES
        },
        "knc_nearest_centre": knc_error(index, sigma2, queries, labels, 1),
    }
    refits = {}
    for k in REFIT_KS:
        index = ClusterIndex(clusters_per_class=k, seed=run.config.train.seed).fit(
            reference, train_labels
        )
        refits[str(k)] = knc_error(
            index, cluster_variance(reference, index), queries, labels, neighbours
        )
    out["knc_refit_eval_sigma2"] = refits
    out.update(
        evaluate(
            queries,
            labels,
            reference=reference,
            reference_labels=train_labels,
            metrics=["knn_error", "error_at_1"],
            k=run.config.eval.knn_k,
        )
    )
    out["reported"] = {k: (run.summary or {}).get(k) for k in ("knc_error", "knn_error")}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    results["setup"] = {
        "machine": platform.node(),
        "threads": 1,
        "neighbours_note": "kNC over L = eval.neighbours nearest centres unless stated",
    }
    runs = results.setdefault("runs", {})
    for run_dir in args.runs:
        if str(run_dir) in runs:
            continue
        runs[str(run_dir)] = measure(run_dir)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(results, indent=1) + "\n")
        r = runs[str(run_dir)]
        print(
            f"{run_dir}: kNC {r['knc_as_trained']:.4f} (eval sigma2 {r['knc_eval_sigma2']:.4f},"
            f" refit K=64 {r['knc_refit_eval_sigma2']['64']:.4f}) kNN {r['knn_error']:.4f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
