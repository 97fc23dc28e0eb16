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

import csv
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._paths import portable_path
from .._validation import check_choice, check_int
from ..losses import loss_spec
from ..reporting import plots
from ..reporting.report import write_report
from ..training import Config, apply_overrides, config_to_dict, train_all
from ..training.machine import hardware
from ..training.run_dir import CONFIG, HISTORY, SUMMARY, run_identity, write_json
from ..training.setup import pin_data_options

#: Columns of the report: (summary key, header); errors are shown in percent.
COLUMNS = (
    ("knc_error", "kNC error"),
    ("knn_error", "kNN error"),
    ("error_at_5", "error@5"),
    ("map_at_r", "MAP@R"),
    ("nmi", "NMI"),
    ("f1", "F1"),
    ("train_seconds", "train s"),
    ("refresh_seconds", "refresh s"),
    ("images_per_second", "images/s"),
)
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


def cluster_loss(name: str) -> bool:
    """Whether loss ``name`` trains from the cluster index (Magnet-style neighbourhoods)."""
    return loss_spec(name).uses_index


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
    table = _table(losses, runs, curves, reference)
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
    files = _write_report(out, table, runs, curves, histories, meta)
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
    if cluster_loss(loss):
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
    return "knc_error" if cluster_loss(loss) else "knn_error"


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


def first_reached(curve: list[tuple[int, float]], target: float) -> int | None:
    """First evaluated iteration whose error is <= ``target`` (None if never)."""
    return next((it for it, error in curve if error <= target + 1e-12), None)


def _table(losses, runs, curves, reference) -> list[dict]:
    target = curves[reference][-1] if reference in curves and curves[reference] else None
    table = []
    for loss in losses:
        rows = [r for r in runs if r["loss"] == loss]
        entry: dict = {
            "loss": loss,
            "seeds": len(rows),
            "curve_metric": rows[0]["curve_metric"],
            "iterations": rows[0]["iterations"],
        }
        for key, _ in COLUMNS:
            values = np.array([np.nan if r[key] is None else r[key] for r in rows], float)
            entry[key] = float(np.mean(values))
            entry[f"{key}_std"] = float(np.std(values, ddof=1)) if len(rows) > 1 else None
        entry["final_error"] = curves[loss][-1][1] if curves[loss] else None
        reached = first_reached(curves[loss], target[1]) if target else None
        entry["reached"] = reached
        entry["speedup"] = target[0] / reached if reached else None
        table.append(entry)
    return table


def _cell(entry: dict, key: str) -> str:
    value, std = entry[key], entry.get(f"{key}_std")
    if value is None or not np.isfinite(value):
        return "n/a"
    if key.endswith("error") or key.startswith("error"):
        text = f"{100 * value:.2f}%" + (f" ± {100 * std:.2f}" if std is not None else "")
    elif key.endswith("seconds"):
        text = f"{value:.1f}" + (f" ± {std:.1f}" if std is not None else "")
    elif key.startswith("images"):
        text = f"{value:.0f}" + (f" ± {std:.0f}" if std is not None else "")
    else:
        text = f"{value:.3f}" + (f" ± {std:.3f}" if std is not None else "")
    return text


def report_rows(table: list[dict], reference: str) -> list[dict]:
    """The per-loss rows of the report (mean ± sample std over seeds), as shown."""
    rows = []
    for e in table:
        final = "n/a" if e["final_error"] is None else f"{100 * e['final_error']:.2f}%"
        rows.append(
            {
                "loss": f"{e['loss']} ({e['curve_metric'].replace('_error', '')})",
                **{name: _cell(e, key) for key, name in COLUMNS},
                "final curve error": final,
                f"iterations to {reference}'s final error": "never"
                if e["reached"] is None
                else str(e["reached"]),
                "speed-up": "" if e["speedup"] is None else f"{e['speedup']:.1f}x",
            }
        )
    return rows


def _write_report(out, table, runs, curves, histories, meta) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "csv": out / "results.csv",
        "md": out / "report.md",
        "html": out / "report.html",
        "json": out / "results.json",
        "plot": out / "error_curves.png",
    }
    with open(files["csv"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    reference = meta["reference"]
    drawn = {loss: curve for loss, curve in curves.items() if curve}
    markers = {e["loss"]: e["reached"] for e in table if e["loss"] in drawn}
    if drawn:
        plots.plot_error_curves(
            drawn,
            files["plot"],
            markers if reference in drawn else None,
            title="Test error during training (same images seen)",
            marker_label=f"reached {reference}'s final error",
        )
    budget, config = meta["images_per_run"], meta["config"]
    page = {
        "title": f"Loss comparison: {config['data']['name']}, {config['model']['backbone']}",
        "command": meta["command"] or "magnetdml.experiments.compare.compare(...)",
        "description": (
            f"Data: {config['data']['name']} (data seed {config['data']['seed']}, "
            f"val_fraction {config['data']['val_fraction']} of train held out); seeds "
            f"{meta['seeds']}; budget per loss: {budget['epochs']} epochs x "
            f"{budget['iterations_per_epoch']} iterations x {budget['batch_size']} images "
            f"= {budget['images']} images."
        ),
        "tables": [
            {
                "title": "Test error per loss (mean ± sample std over seeds)",
                "rows": report_rows(table, reference),
            }
        ],
        "notes": [
            "Errors are on the seen-class test split: kNC with the run's cluster index "
            "(losses without one get a k-means index of their final embeddings), kNN = soft "
            "kNN (paper §3.3). The curve error is each loss's own protocol (kNC for cluster "
            f"losses, kNN otherwise) unless --curve-metric says otherwise "
            f"(here: {meta['curve_metric']}). 'train s' is the time of the training steps "
            "plus every index refresh after the first ('refresh s' counts all refreshes); "
            "images/s = images / train s. Mean ± sample std over seeds."
        ],
        "figures": [{"title": "error curves", "path": files["plot"].name}] if drawn else [],
    }
    write_json(
        files["json"],
        {
            **meta,
            **page,
            "table": table,
            "runs": runs,
            "curves": {k: [list(p) for p in v] for k, v in curves.items()},
            "curves_per_seed": {
                f"{loss}/seed{seed}": [list(p) for p in h] for (loss, seed), h in histories.items()
            },
        },
    )
    write_report(out)  # report.md and report.html: the renderer of every results folder
    return files
