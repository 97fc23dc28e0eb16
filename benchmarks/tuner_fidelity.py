"""How well a search trial's sampled kNN score stands in for the final runs' full one.

A kNN loss's trial (``magnetdml.experiments.trial.tuner_error``) scores the validation split
against a seeded sample of ``M`` = 5,000 of the ``N`` training embeddings, not all of them. The
``k`` nearest of all ``N`` fill a ball that holds about ``k M / N`` sample points, so the trial
counts ``k' = max(1, round(k M / N))`` neighbours there. This benchmark trains one run per loss
and learning rate and, after every pass, scores the validation split four ways:

- ``full``: soft kNN against all ``N`` training embeddings with ``k = eval.knn_k`` (128), the
  final runs' early-stopping score;
- ``sample<s>_k``: against sample ``s`` (seeds 0, 1; seed 0 is the trial's) with ``k``;
- ``sample<s>_scaled``: the same sample with ``k'`` (what trials score).

Per way it reports the mean absolute difference from ``full``, the mean difference (bias),
Spearman's correlation with ``full`` over all (learning rate, pass) cells, the mean of the
per-pass Kendall correlations across learning rates (does the sample rank the trials as the
full score would?), and the median seconds of its neighbour search.

Fashion-MNIST (54k training images after the 10% validation split), the MLP, embedding 64,
one torch thread, 5 passes. Results: ``benchmarks/results/tuner_fidelity.json``; finished
(loss, learning rate) runs are kept and skipped when the command is run again.

    python benchmarks/tuner_fidelity.py --data-dir ../shared/data/fashion-mnist
    python benchmarks/tuner_fidelity.py --quick     # digits, 2 rates, into the temp folder
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "tuner_fidelity.json"
SAMPLE_SEEDS = (0, 1)


def score_ways(trainer, k: int, sample: int) -> dict:
    """The validation split's soft-kNN error, full and on the samples, and search seconds."""
    from magnetdml.evaluation import evaluate

    queries, labels = trainer.embed(trainer.splits.val), trainer.splits.val.labels
    train = trainer.splits.train
    reference = trainer.embed(train)
    row = {"full": evaluate(queries, labels, reference, train.labels, ["knn_error"], k=k)}
    scaled = max(1, round(k * sample / len(train)))
    for seed in SAMPLE_SEEDS:
        rows = np.sort(np.random.default_rng(seed).choice(len(train), sample, replace=False))
        for way, neighbours in (("k", k), ("scaled", scaled)):
            started = time.perf_counter()
            row[f"sample{seed}_{way}"] = evaluate(
                queries, labels, reference[rows], train.labels[rows], ["knn_error"], k=neighbours
            )
            row[f"seconds_{way}"] = time.perf_counter() - started
    out = {key: float(value["knn_error"]) for key, value in row.items() if isinstance(value, dict)}
    return {**out, **{key: value for key, value in row.items() if key.startswith("seconds")}}


def summarise(loss: str, cells: list[dict]) -> list[dict]:
    """One row per way (``name`` = loss and way): agreement with ``full`` over all cells and
    per pass across learning rates."""
    from scipy.stats import kendalltau, spearmanr

    full = np.array([c["full"] for c in cells])
    ways = [key for key in cells[0] if key.startswith("sample")]
    out = []
    for way in ways:
        values = np.array([c[way] for c in cells])
        taus = []
        for epoch in sorted({c["epoch"] for c in cells}):
            rows = [i for i, c in enumerate(cells) if c["epoch"] == epoch]
            if len(rows) > 2:
                taus.append(kendalltau(full[rows], values[rows]).statistic)
        out.append(
            {
                "name": f"{loss} {way}",
                "mean_abs_diff": float(np.mean(np.abs(values - full))),
                "bias": float(np.mean(values - full)),
                "spearman": float(spearmanr(full, values).statistic),
                "kendall_per_pass_mean": float(np.mean(taus)) if taus else None,
                "search_seconds_median": float(
                    np.median([c["seconds_" + way.split("_", 1)[1]] for c in cells])
                ),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default="../shared/data/fashion-mnist")
    parser.add_argument("--losses", nargs="+", default=["softmax", "triplet"])
    parser.add_argument("--lrs", nargs="+", type=float, default=[3e-4, 1e-3, 4e-3, 0.016, 0.06])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    import torch

    from magnetdml.experiments.trial import TUNER_REFERENCES
    from magnetdml.training import Config, apply_overrides, train

    torch.set_num_threads(1)
    data = (
        {"data.name": "digits"}
        if args.quick
        else {"data.name": "fashion-mnist", "data.data_dir": args.data_dir}
    )
    sample = 300 if args.quick else TUNER_REFERENCES
    if args.quick:
        args.lrs, args.epochs = args.lrs[1:3], 2
    out = Path(tempfile.gettempdir()) / "tuner_fidelity.json" if args.quick else RESULTS
    done = json.loads(out.read_text()) if out.is_file() and not args.quick else {}
    cells = done.get("cells", [])
    for loss in args.losses:
        for lr in args.lrs:
            if any(c["loss"] == loss and c["lr"] == lr for c in cells):
                continue
            config = apply_overrides(
                Config(),
                {
                    **data,
                    "loss.name": loss,
                    "model.backbone": "mlp",
                    "model.embedding_dim": 64,
                    "data.val_fraction": 0.1,
                    "train.threads": 1,
                    "train.epochs": args.epochs,
                    "train.lr": lr,
                    "sampler.classes_per_batch": 8,
                    "sampler.examples_per_class": 6,
                    "eval.every": 0,
                    "eval.plots": False,
                    "eval.final": False,
                    "out": tempfile.mkdtemp(prefix="tuner-fidelity-"),
                },
            )
            run = []

            def on_epoch(trainer, _record, run=run, loss=loss, lr=lr, k=config.eval.knn_k):
                cell = {"loss": loss, "lr": lr, "epoch": trainer.epoch}
                run.append({**cell, **score_ways(trainer, k, sample)})
                print(json.dumps(run[-1]), flush=True)

            train(config, progress=False, on_epoch=on_epoch)
            cells.extend(run)  # a whole run or nothing: a resumed command redoes a cut one
            _write(out, args, cells)
    _write(out, args, cells)
    print(f"wrote {out}")


def _write(out: Path, args, cells: list[dict]) -> None:
    from magnetdml._paths import portable_path

    losses = sorted({c["loss"] for c in cells})
    results = {
        "command": "python benchmarks/tuner_fidelity.py"
        + (" --quick" if args.quick else f" --data-dir {portable_path(args.data_dir)}"),
        "ran": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": platform.processor() or platform.machine(),
        "summary": [
            row
            for loss in losses
            for row in summarise(loss, [c for c in cells if c["loss"] == loss])
        ],
        "cells": cells,
    }
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
