"""Which pruner for ``magnetdml search``: median, Hyperband, or none, on a small case.

Each cell is a full Optuna search (seeded TPE, ``--trials`` trials of up to ``--epochs`` passes,
each reporting its validation error after every pass) of one loss on digits with the MLP,
repeated for ``--seeds`` sampler seeds. Per pruner it records the best validation error found,
the passes trained in all (the compute spent: a pruned trial stops early), and the wall time;
then, to see whether the best trial chosen is actually good and not a lucky validation draw,
the best configuration retrained once with another seed and scored on the test split.

"Better" = a lower test error of the configuration chosen at fewer passes. Results:
``benchmarks/results/search_pruners.json``.

    nice -n 10 python benchmarks/search_pruners.py
    python benchmarks/search_pruners.py --quick         # 4 trials, 2 passes, into /tmp
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "search_pruners.json"
PRUNERS = ("none", "median", "hyperband")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--losses", default="softmax,magnet")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.epochs, args.seeds = 4, 2, 1

    import torch

    from magnetdml.experiments.search import search
    from magnetdml.training import Config, apply_overrides, train

    torch.set_num_threads(1)
    common = {
        "data.name": "digits",
        "data.val_fraction": 0.2,
        "model.backbone": "mlp",
        "model.embedding_dim": 32,
        "train.threads": 1,
        "train.epochs": args.epochs,
        "eval.neighbours": 32,
        "eval.knn_k": 16,
    }
    folder = Path(tempfile.mkdtemp(prefix="search-pruners-"))
    cells = []
    for loss in args.losses.split(","):
        base = apply_overrides(Config(), {**common, "loss.name": loss})
        for seed in range(args.seeds):
            for pruner in PRUNERS:
                out = folder / f"{loss}-{pruner}-{seed}"
                started = time.perf_counter()
                result = search(
                    base,
                    out,
                    trials=args.trials,
                    seed=seed,
                    pruner=pruner,
                    log=lambda _message: None,
                )
                wall = time.perf_counter() - started
                check = apply_overrides(
                    result.best_config,
                    {
                        "train.seed": 100 + seed,
                        "eval.every": 0,
                        "eval.plots": False,
                        "eval.final": True,
                        "out": str(out / "check"),
                    },
                )
                summary = train(check, progress=False).summary
                metric = "knc_error" if loss == "magnet" else "knn_error"
                cell = {
                    "loss": loss,
                    "seed": seed,
                    "pruner": pruner,
                    "best_val_error": result.best["val_error"],
                    "test_error_of_best": summary[metric],
                    "test_metric": metric,
                    "passes": int(sum(r["epochs"] or 0 for r in result.trials)),
                    "pruned": sum(r["state"] == "pruned" for r in result.trials),
                    "wall_seconds": round(wall, 1),
                }
                cells.append(cell)
                print(json.dumps(cell), flush=True)
    summary = {}
    for loss in args.losses.split(","):
        for pruner in PRUNERS:
            mine = [c for c in cells if c["loss"] == loss and c["pruner"] == pruner]
            summary[f"{loss}/{pruner}"] = {
                key: float(np.mean([c[key] for c in mine]))
                for key in (
                    "best_val_error",
                    "test_error_of_best",
                    "passes",
                    "pruned",
                    "wall_seconds",
                )
            }
    results = {
        "command": "python benchmarks/search_pruners.py" + (" --quick" if args.quick else ""),
        "ran": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "setup": {**common, "trials": args.trials, "seeds": args.seeds},
        "means_over_seeds": summary,
        "cells": cells,
    }
    out = Path(tempfile.gettempdir()) / "search_pruners.json" if args.quick else RESULTS
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(summary, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
