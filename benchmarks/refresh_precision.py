"""Does a bfloat16 refresh change what Magnet learns? (``index.refresh_precision``)

The refresh's eval pass over the training set is most of what Magnet's index costs
(``training_overhead.py``). ``--index.refresh_precision bfloat16`` runs that pass on
bfloat16 kernels (``models/inference.py``); the final index and every evaluation stay float32.
This measures what the setting moves, on ``training_overhead.py``'s setup (Fashion-MNIST, 10%
of the training set, small CNN, embedding 64, one torch thread, 3 epochs):

- **test errors** of Magnet trained with float32 and with bfloat16 refreshes, for
  ``--seeds`` seeds each (kNC, kNN, MAP@R on all 10k test images): the difference between
  the two against the spread between seeds;
- **the clusters**, after every epoch of each float32 run: the training set embedded both
  ways by the same weights, the run's just-refreshed index refreshed again (warm start) on
  the bfloat16 embeddings, and the share of training examples whose cluster is the same
  (``same_cluster``) with the adjusted Rand index between the two assignments; with the
  median relative error of a bfloat16 embedding (``||e_bf16 - e_fp32|| / ||e_fp32||``);
- **the pass's speed**: both passes timed one after the other in the same process, as the
  refresh runs them (its threads on the cores training leaves idle), ratio
  ``float32 seconds / bfloat16 seconds``.

Results: ``benchmarks/results/refresh_precision.json`` (runs already there are kept, so an
interrupted command resumes; ``summary`` is recomputed every time).

    python benchmarks/refresh_precision.py --data-dir ../shared/data/fashion-mnist
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from training_overhead import COMMON  # noqa: E402  the same setup as the speed table

from magnetdml.models.inference import PRECISIONS  # noqa: E402  float32, bfloat16

RESULTS = Path(__file__).parent / "results" / "refresh_precision.json"


def compare_clusters(trainer) -> dict:
    """The trainer's current (float32) index against the same index refreshed on bfloat16
    embeddings of the same weights, and the two passes' seconds."""
    from sklearn.metrics import adjusted_rand_score

    from magnetdml.training.embed import embed_dataset

    upkeep = trainer.upkeep
    seconds = {}
    embeddings = {}
    for precision in PRECISIONS:
        started = time.perf_counter()
        embeddings[precision] = embed_dataset(
            trainer.model, upkeep.dataset, device=trainer.dist.device, precision=precision
        )
        seconds[precision] = time.perf_counter() - started
    full, low = embeddings["float32"], embeddings["bfloat16"]
    moved = copy.deepcopy(trainer.index).refresh(low, trainer.labels)
    ours = trainer.index.assignments_
    relative = np.linalg.norm(low - full, axis=1) / np.linalg.norm(full, axis=1)
    return {
        "same_cluster": float(np.mean(moved.assignments_ == ours)),
        "adjusted_rand": float(adjusted_rand_score(ours, moved.assignments_)),
        "median_relative_error": float(np.median(relative)),
        "pass_seconds_float32": round(seconds["float32"], 3),
        "pass_seconds_bfloat16": round(seconds["bfloat16"], 3),
    }


def run(precision: str, seed: int, data_dir: str, out: Path) -> dict:
    from magnetdml.training import apply_overrides, train
    from magnetdml.training.config import Config

    config = apply_overrides(
        Config(),
        {
            **COMMON,
            "loss.name": "magnet",
            "train.seed": seed,
            "index.refresh_precision": precision,
            "data.data_dir": data_dir,
            "out": str(out / f"{precision}-{seed}"),
        },
    )
    epochs = []

    def on_epoch(trainer, record):
        if precision == "float32":  # the index was just refreshed on float32 embeddings
            epochs.append({"epoch": record["epoch"], **compare_clusters(trainer)})

    summary = train(config, overwrite=True, progress=False, on_epoch=on_epoch).summary
    return {
        "precision": precision,
        "seed": seed,
        "knc_error": summary["knc_error"],
        "knn_error": summary["knn_error"],
        "map_at_r": summary.get("map_at_r"),
        "refreshes": summary["refreshes"],
        "refresh_seconds": round(summary["refresh_seconds"], 3),
        "train_seconds": round(summary["train_seconds"], 3),
        "clusters": epochs,
        "load_average": list(os.getloadavg()),
        "ran_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def summarise(runs: list[dict]) -> list[dict]:
    """One row per precision (errors: mean and range over seeds), then one row of the
    bfloat16 - float32 difference paired by seed (``bfloat16_minus_float32``), and one of
    the cluster comparisons (``clusters_of_float32_runs``)."""
    rows = []
    by = {
        p: sorted((r for r in runs if r["precision"] == p), key=lambda r: r["seed"])
        for p in PRECISIONS
    }
    for precision, group in by.items():
        if not group:
            continue
        row = {"name": precision, "seeds": len(group)}
        for metric in ("knc_error", "knn_error", "map_at_r"):
            values = [r[metric] for r in group]
            row[metric] = float(np.mean(values))
            row[f"{metric}_min_max"] = [min(values), max(values)]
        rows.append(row)
    paired = [(a, b) for a in by["float32"] for b in by["bfloat16"] if a["seed"] == b["seed"]]
    if paired:
        row = {"name": "bfloat16_minus_float32", "seeds": len(paired)}
        for metric in ("knc_error", "knn_error", "map_at_r"):
            diffs = [b[metric] - a[metric] for a, b in paired]
            row[metric] = float(np.mean(diffs))
            row[f"{metric}_min_max"] = [min(diffs), max(diffs)]
        rows.append(row)
    epochs = [e for r in by["float32"] for e in r["clusters"]]
    if epochs:
        rows.append(
            {
                "name": "clusters_of_float32_runs",
                "seeds": len(by["float32"]),
                "same_cluster": float(np.mean([e["same_cluster"] for e in epochs])),
                "same_cluster_min": min(e["same_cluster"] for e in epochs),
                "adjusted_rand": float(np.mean([e["adjusted_rand"] for e in epochs])),
                "median_relative_error": float(
                    np.median([e["median_relative_error"] for e in epochs])
                ),
                "pass_speedup": float(
                    np.median(
                        [e["pass_seconds_float32"] / e["pass_seconds_bfloat16"] for e in epochs]
                    )
                ),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="Fashion-MNIST IDX folder")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    results["command"] = (
        f"python benchmarks/refresh_precision.py --data-dir DATA_DIR --seeds {args.seeds}"
    )
    runs = results.setdefault("runs", [])
    done = {(r["precision"], r["seed"]) for r in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for precision in PRECISIONS:
                if (precision, seed) in done:
                    continue  # resumable
                runs.append(run(precision, seed, args.data_dir, Path(tmp)))
                print(json.dumps(runs[-1]), flush=True)
                results["summary"] = summarise(runs)
                _write(args.results, results)
    results["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
    }
    results["summary"] = summarise(runs)
    _write(args.results, results)
    for row in results["summary"]:
        print(row)


def _write(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
