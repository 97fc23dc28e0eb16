"""The page of one run folder, and the pieces an experiment's page shares with it: a run
folder's JSON files, its test-error curves (drawn into ``report_curves.png``) and its figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..training.run_dir import RunDir
from .page import Page, format_cell

CURVES = "report_curves.png"
# The metrics shown for a run, in this order (everything else stays in metrics.json).
RUN_METRICS = (
    "knc_error",
    "knn_error",
    "error_at_1",
    "error_at_5",
    "precision_at_1",
    "map_at_r",
    "recall_at_1",
    "nmi",
    "f1",
)
TIMING = ("epochs", "iterations", "train_seconds", "refresh_seconds", "images_per_second")
TITLES = {
    "loss_curve.png": "Training loss",
    CURVES: "Test error during training",
    "tsne_initial.png": "t-SNE before training",
    "tsne_final.png": "t-SNE after training",
}


def read_json(path: Path) -> Any:
    """The JSON file at ``path``, or ``None`` when there is none."""
    return json.loads(path.read_text()) if path.is_file() else None


def error_curve(history: list[dict]) -> tuple[str, list[tuple[float, float]]] | None:
    """(metric, [(iteration, error), ...]) of the run's headline test error, if logged."""
    for metric in ("knc_error", "knn_error"):
        points = [
            (r["iteration"], r[metric])
            for r in history
            if isinstance(r.get(metric), (int, float)) and "iteration" in r
        ]
        if points:
            return metric, points
    return None


def draw_curves(folder: Path, curves: dict[str, list]) -> Path | None:
    """Draw ``{label: [(iteration, error), ...]}`` into the folder's ``report_curves.png``
    (nothing, and ``None``, when there are no curves)."""
    if not curves:
        return None
    from .plots import plot_error_curves  # matplotlib only when there is something to draw

    return plot_error_curves(curves, folder / CURVES, title="Test error during training")


def add_figures(page: Page, folder: Path, figures: list[tuple[str, str]]) -> None:
    """The listed figures, then every other PNG of the folder itself, each once."""
    listed = {path for path, _ in figures}
    order = list(TITLES)  # known pictures in reading order (before training first)
    extra = sorted(
        (p.name for p in folder.glob("*.png") if p.name not in listed),
        key=lambda name: (order.index(name) if name in order else len(order), name),
    )
    figures = figures + [(name, TITLES.get(name, name)) for name in extra]
    figures = [(path, title) for path, title in figures if (folder / path).is_file()]
    if figures:
        page.add("h2", "Figures")
    for path, title in figures:
        page.add("img", path, title)


def run_page(folder: Path) -> Page:
    """The page of one run folder (``config.json``, ``metrics*.json*``, its PNGs)."""
    config = read_json(folder / "config.json") or {}
    summary = read_json(folder / "metrics.json")
    history = RunDir(folder).read_history()
    data, loss = config.get("data", {}), config.get("loss", {})
    page = Page(
        f"Run {folder.name}: {data.get('name')}, {loss.get('name')} loss, "
        f"{config.get('model', {}).get('backbone')} backbone",
        folder,
    )
    state = "finished" if summary else f"unfinished ({len(history)} epoch(s) logged)"
    page.add("p", f"Run folder {folder}; {state}.")
    if summary:
        rows = [{"metric": m, "value": summary[m]} for m in RUN_METRICS if m in summary]
        rows += [
            {"metric": f"unseen {m}", "value": v} for m, v in (summary.get("unseen") or {}).items()
        ]
        page.add("h2", "Test metrics")
        page.add(
            "table",
            [{"metric": r["metric"], "value": format_cell(r["metric"], r["value"])} for r in rows],
            ["metric", "value"],
        )
        page.add("h2", "Cost")
        page.add("table", [{k: summary.get(k) for k in TIMING}], list(TIMING))
    evaluation = read_json(folder / "evaluation.json")
    if evaluation:
        splits = [s for s, v in evaluation.items() if isinstance(v, dict)]
        metrics = list(dict.fromkeys(m for s in splits for m in evaluation[s]))
        page.add("h2", f"Re-evaluation (evaluation.json, epoch {evaluation.get('epoch')})")
        page.add(
            "table",
            [
                {"metric": m, **{s: format_cell(m, evaluation[s].get(m)) for s in splits}}
                for m in metrics
            ],
            ["metric", *splits],
        )
    if history:
        columns = ["epoch", "iteration", "loss", "lr", "sigma2", "knc_error", "knn_error"]
        columns = [c for c in columns if any(c in r for r in history)]
        page.add("h2", "Training history (metrics.jsonl)")
        page.add("table", history, columns)
    draw_curves(
        folder,
        {
            m: [(r["iteration"], r[m]) for r in history if r.get(m) is not None]
            for m in ("knc_error", "knn_error")
            if any(r.get(m) is not None for r in history)
        },
    )
    add_figures(page, folder, [])
    page.add("h2", "Config (config.json)")
    page.add("pre", json.dumps(config, indent=2))
    return page
