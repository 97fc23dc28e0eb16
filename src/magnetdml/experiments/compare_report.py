"""The report of ``magnetdml compare`` (:mod:`.compare`): the table of means over seeds, the
error curves with the iteration where each loss first reached the reference's final error,
``results.csv`` / ``results.json``, and ``report.md`` / ``report.html`` through the one
renderer (:func:`magnetdml.reporting.write_report`)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..reporting import plots
from ..reporting.report import write_report
from ..training.atomic_files import write_json

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


def first_reached(curve: list[tuple[int, float]], target: float) -> int | None:
    """First evaluated iteration whose error is <= ``target`` (None if never)."""
    return next((it for it, error in curve if error <= target + 1e-12), None)


def summary_table(losses, runs, curves, reference) -> list[dict]:
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


def write_compare_report(out, table, runs, curves, histories, meta) -> dict[str, Path]:
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
