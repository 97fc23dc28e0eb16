"""Compare losses under one budget (paper §4, Fig. 5): ``magnetdml compare``.

Every loss trains with the same backbone, data, seed and number of training images seen
(epochs x iterations per epoch x batch, where the batch is ``M x D`` neighbourhood examples for
cluster losses and ``P x K`` examples for the others -- class-balanced, or uniformly shuffled
for softmax: both 48 by default). Each run lives in ``OUT/<loss>/seed<s>/`` and is an ordinary
run folder, so a rerun skips finished runs and resumes unfinished ones from their checkpoint.
The report: ``results.csv`` (one row per loss, mean and spread over seeds), ``results.json``
(every run's numbers and curves, and the report's tables), ``error_curves.png`` (test error
against iteration with red diamonds where each loss first reached the reference loss's final
error), and ``report.md`` / ``report.html`` rendered from them by
:func:`magnetdml.reporting.write_report`, like every experiment's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._paths import portable_path
from .._validation import check_choice, check_int
from ..losses import loss_spec
from ..training import Config, apply_overrides, config_to_dict, train_all
from ..training.machine import hardware
from ..training.run_dir import CONFIG, HISTORY, SUMMARY
from ..training.run_identity import run_identity
from ..training.setup import pin_data_options
from .compare_report import COLUMNS, summary_table, write_compare_report

CURVE_METRICS = ("own", "knc_error", "knn_error")


@dataclass(frozen=True)
class CompareResult:
    """``table``: one dict per loss (means, ``<key>_std``, final curve error, ``reached``:
    the iteration its mean curve first reached the reference's final error, or None);
    ``runs``: one dict per (loss, seed) with the summary numbers; ``curves``: per loss the
    mean ``[(iteration, error), ...]`` over seeds; ``files``: what was written."""

    out: Path
    table: list[dict]
    runs: list[dict]
    curves: dict[str, list[tuple[int, float]]]
    files: dict[str, Path]


def compare(
    config: Config,
    losses: Sequence[str],
    out: str | os.PathLike,
    *,
    seeds: Sequence[int] | None = None,
    reference: str = "triplet",
    curve_metric: str = "own",
    overwrite: bool = False,
    progress: bool = False,
    jobs: int = 1,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
) -> CompareResult:
    """Train every loss of ``losses`` (CLI names) for every seed under ``config``'s budget.

    ``curve_metric``: the test error plotted and used for the markers; ``"own"`` is each
    loss's protocol in the paper (§3.3-4): kNC for cluster losses, soft kNN for the others.
    ``reference``: the loss whose final error the markers refer to (paper Fig. 5: triplet);
    ignored when it is not compared. ``overwrite`` retrains finished runs. ``jobs`` runs are
    trained at once in worker processes (:func:`~magnetdml.training.train_all`).
    """
    losses = _check_losses(losses)
    seeds = (
        [config.train.seed] if seeds is None else [check_int("seeds", s, minimum=0) for s in seeds]
    )
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct non-negative integers; got {seeds}")
    check_choice("curve_metric", curve_metric, CURVE_METRICS)
    _check_budget(config, losses)
    out = Path(portable_path(out))  # relative paths in every file written: results travel
    if config.data.data_dir is not None:
        config = apply_overrides(config, {"data.data_dir": portable_path(config.data.data_dir)})
    log = log or (lambda _message: None)
    configs = {
        (loss, seed): apply_overrides(
            config, {"loss.name": loss, "train.seed": seed, "out": str(out / loss / f"seed{seed}")}
        ).validate()
        for loss in losses
        for seed in seeds
    }
    todo = []
    for (loss, seed), run_config in configs.items():
        if not overwrite and _finished_summary(Path(run_config.out), run_config) is not None:
            log(f"compare: {loss} (seed {seed}) already finished in {run_config.out}; skipped")
        else:
            log(f"compare: training {loss} (seed {seed}) in {run_config.out}")
            todo.append(run_config)
    train_all(todo, jobs=jobs, overwrite=overwrite, progress=progress, log=log)
    runs, histories = [], {}
    for (loss, seed), run_config in configs.items():
        run_dir = Path(run_config.out)
        summary = json.loads((run_dir / SUMMARY).read_text())
        metric = _curve_key(loss, curve_metric)
        history = [
            (int(r["iteration"]), float(r[metric]))
            for r in _read_jsonl(run_dir / HISTORY)
            if metric in r
        ]
        histories[loss, seed] = history
        runs.append(
            {
                "loss": loss,
                "seed": seed,
                "run_dir": str(run_dir),
                "iterations": summary["iterations"],
                "curve_metric": metric,
                **{key: summary.get(key) for key, _ in COLUMNS},
            }
        )
    curves = {loss: _mean_curve([histories[loss, s] for s in seeds]) for loss in losses}
    table = summary_table(losses, runs, curves, reference)
    meta = {
        "command": command,
        "hardware": hardware(config),
        "seeds": seeds,
        "losses": losses,
        "reference": reference,
        "curve_metric": curve_metric,
        "config": config_to_dict(config),
        "images_per_run": _budget(config, losses[0], runs[0]["iterations"]),
    }
    files = write_compare_report(out, table, runs, curves, histories, meta)
    return CompareResult(out=out, table=table, runs=runs, curves=curves, files=files)


def _check_losses(losses: Sequence[str]) -> list[str]:
    names = [losses] if isinstance(losses, str) else list(losses)
    if not names:
        raise ValueError(
            "losses must name at least one loss, e.g. magnet,triplet,softmax; got none"
        )
    for name in names:
        loss_spec(name)  # unknown names: a did-you-mean and the valid ones
    if len(set(names)) != len(names):
        raise ValueError(f"losses must not repeat a name; got {names}")
    return names


def _batch(config: Config, loss: str) -> tuple[int, str]:
    s = config.sampler
    if loss_spec(loss).uses_index:  # M x D neighbourhoods
        return (
            s.clusters_per_batch * s.examples_per_cluster,
            "sampler.clusters_per_batch x sampler.examples_per_cluster",
        )
    return (
        s.classes_per_batch * s.examples_per_class,
        "sampler.classes_per_batch x sampler.examples_per_class",
    )


def _check_budget(config: Config, losses: list[str]) -> None:
    """Same images seen by every loss: the batch sizes (M*D, P*K) must agree."""
    batches = {loss: _batch(config, loss) for loss in losses}
    if len({size for size, _ in batches.values()}) > 1:
        detail = "; ".join(f"{loss}: {how} = {size}" for loss, (size, how) in batches.items())
        raise ValueError(
            "every loss must see the same number of images per iteration "
            f"(same budget); got {detail}. Set M x D equal to P x K"
        )


def _budget(config: Config, loss: str, iterations: int) -> dict:
    size = _batch(config, loss)[0]
    return {
        "batch_size": size,
        "epochs": config.train.epochs,
        "iterations_per_epoch": iterations // config.train.epochs,
        "images": iterations * size,
    }


def _curve_key(loss: str, curve_metric: str) -> str:
    if curve_metric != "own":
        return curve_metric
    return loss_spec(loss).own_metric


def _finished_summary(run_dir: Path, config: Config) -> dict | None:
    """The summary of a finished run of exactly ``config``; None when there is none yet."""
    if not (run_dir / SUMMARY).is_file():
        return None
    saved = json.loads((run_dir / CONFIG).read_text())
    asked = json.loads(json.dumps(config_to_dict(pin_data_options(config))))  # as train()
    # writes it (image folders); run_identity: not the version that wrote it, nor where it
    # ran or logged
    if run_identity(saved) != run_identity(asked):
        raise ValueError(
            f"{str(run_dir)!r} holds a finished run with a different config "
            "(other flags than this comparison's); pass --overwrite to retrain "
            "it, or choose another --out"
        )
    return json.loads((run_dir / SUMMARY).read_text())


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _mean_curve(histories: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    """Mean error per iteration over seeds (the budget makes the iterations identical)."""
    points: dict[int, list[float]] = {}
    for history in histories:
        for iteration, error in history:
            points.setdefault(iteration, []).append(error)
    return [(it, float(np.mean(errors))) for it, errors in sorted(points.items())]
