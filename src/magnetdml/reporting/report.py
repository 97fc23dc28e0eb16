"""``magnetdml report DIR``: one page for a run folder or an experiment folder.

A page is a list of blocks (headings, paragraphs, tables, figures, code) gathered from the
files training and experiments write -- ``config.json``, ``metrics.json``, ``metrics.jsonl``,
``evaluation.json``, ``results.json`` and the PNGs beside them -- and rendered twice (by
:mod:`magnetdml.reporting.page`):

* ``report.html``: self-contained (every PNG inlined as a base64 ``data:`` URI, no external
  CSS or script), so it can be mailed or archived as one file;
* ``report.md``: the same content with relative PNG links, for browsing in a repository.

Training curves (test error against iteration from ``metrics.jsonl``) are drawn into
``report_curves.png`` in the folder, so both pages can show them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .._validation import check_choice
from ..training.run_dir import RunDir
from .page import Page, format_cell, render_html, render_markdown

FORMATS = ("both", "html", "markdown")
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
# The numbers of each run in an experiment's "Runs" table (its results.json keeps them too).
RUN_ROW_METRICS = ("knc_error", "knn_error", "error_at_5", "map_at_r", "nmi", "train_seconds")
TITLES = {
    "loss_curve.png": "Training loss",
    CURVES: "Test error during training",
    "tsne_initial.png": "t-SNE before training",
    "tsne_final.png": "t-SNE after training",
}


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _error_curve(history: list[dict]) -> tuple[str, list[tuple[float, float]]] | None:
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


def _draw_curves(folder: Path, curves: dict[str, list]) -> Path | None:
    if not curves:
        return None
    from .plots import plot_error_curves  # matplotlib only when there is something to draw

    return plot_error_curves(curves, folder / CURVES, title="Test error during training")


def run_page(folder: Path) -> Page:
    """The page of one run folder (``config.json``, ``metrics*.json*``, its PNGs)."""
    config = _read_json(folder / "config.json") or {}
    summary = _read_json(folder / "metrics.json")
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
    evaluation = _read_json(folder / "evaluation.json")
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
    _draw_curves(
        folder,
        {
            m: [(r["iteration"], r[m]) for r in history if r.get(m) is not None]
            for m in ("knc_error", "knn_error")
            if any(r.get(m) is not None for r in history)
        },
    )
    _add_figures(page, folder, [])
    page.add("h2", "Config (config.json)")
    page.add("pre", json.dumps(config, indent=2))
    return page


def experiment_page(folder: Path) -> Page:
    """The page of a results folder: ``results.json`` of ``magnetdml experiment``, ``compare``
    or a benchmark (the keys below, all optional), one run folder per run beneath it.

    ``experiment``, ``quick``, ``description``, ``partial`` (``finished``, ``total``,
    ``missing``), ``command``, ``reanalysed_by``, ``hardware``, ``wall_seconds`` with
    ``runs_trained``, ``tuned`` (+ ``tuned_from``), ``tables`` (``title``, ``rows``,
    ``columns``), ``claims`` (``claim``, ``holds``, ``detail``), ``notes``, ``figures``
    (``title``, ``path``) and ``runs`` (name -> ``group``)."""
    results = _read_json(folder / "results.json")
    if not isinstance(results, dict):
        raise ValueError(
            f"{folder / 'results.json'} must hold a JSON object (the results of "
            "'magnetdml experiment'); got something else"
        )
    quick = " (quick version)" if results.get("quick") else ""
    page = Page(
        results.get("title") or f"Experiment {results.get('experiment', folder.name)}{quick}",
        folder,
    )
    if results.get("description"):
        page.add("p", str(results["description"]))
    partial = results.get("partial")
    if partial:
        page.add(
            "p",
            f"**Partial results: {partial['finished']} of {partial['total']} runs "
            f"finished.** Missing: {', '.join(partial['missing'])}. Rerun the experiment "
            "without --finished-only to train them (finished runs are skipped).",
        )
    if results.get("command"):
        page.add("p", f"Command: `{results['command']}`")
    if results.get("reanalysed_by"):
        page.add("p", f"Re-analysed by: `{results['reanalysed_by']}`")
    hw = results.get("hardware") or {}
    if hw:
        page.add(
            "p",
            f"Hardware: {hw.get('cpu')}, {hw.get('cores')} cores, "
            f"{hw.get('torch_threads')} torch thread(s), device {hw.get('device')}, "
            f"torch {hw.get('torch')}. Runs: {len(results.get('runs') or {})}.",
        )
    if results.get("runs_trained"):
        page.add(
            "p",
            f"Wall time of the invocation that wrote this report: "
            f"{results['wall_seconds'] / 60:.1f} min, training {results['runs_trained']} "
            "of the runs (finished runs are skipped).",
        )
    if results.get("tuned"):
        rows = [
            {
                "search": name,
                **{
                    key: entry.get(key)
                    for key in ("val_error", "metric", "trials", "pruned", "failed")
                    if key in entry
                },
                **entry["params"],
            }
            for name, entry in results["tuned"].items()
        ]
        page.add("h2", "Tuned configurations")
        # a search with a `metric` is the random search that Optuna replaced (older folders)
        random = any("metric" in entry for entry in results["tuned"].values())
        search = "random search" if random else "Optuna study (seeded TPE, pruned trials)"
        page.add(
            "p",
            f"Each group of runs trained with the best trial of its own {search} "
            f"(`{results.get('tuned_from')}/tuning/`), scored on a validation split "
            "by its loss's own protocol (a blank cell: not searched for that loss):",
        )
        page.add("table", rows, list(dict.fromkeys(k for row in rows for k in row)))
    for table in results.get("tables", []):
        page.add("h2", table.get("title", "Results"))
        if table.get("rows"):
            page.add("table", table["rows"], table.get("columns"))
        else:
            page.add("p", "(no rows)")
    if results.get("claims"):
        page.add("h2", "Claims checked")
        page.add(
            "table",
            [
                {
                    "claim": c.get("claim"),
                    "measured": c.get("detail", ""),
                    "holds": {True: "yes", False: "no"}.get(c.get("holds"), "n/a"),
                }
                for c in results["claims"]
            ],
            ["claim", "holds", "measured"],
        )
    for note in results.get("notes", []):
        page.add("p", str(note))
    figures = [(f["path"], f.get("title", f["path"])) for f in results.get("figures", [])]
    listed = results.get("runs")  # compare: a list of its runs, in nested folders
    runs = _run_rows(folder, listed if isinstance(listed, dict) else {})
    if runs:
        page.add("h2", "Runs")
        columns = list(dict.fromkeys(k for row, _ in runs for k in row))
        page.add("table", [row for row, _ in runs], columns)
    curves = {}
    for row, history in runs:
        curve = _error_curve(history)
        if curve:
            curves[f"{row['run']} ({curve[0]})"] = curve[1]
    if _draw_curves(folder, curves):
        figures.append((CURVES, TITLES[CURVES]))
    figures += [
        (f"{row['run']}/loss_curve.png", f"Training loss: {row['run']}")
        for row, _ in runs
        if (folder / row["run"] / "loss_curve.png").is_file()
    ]
    _add_figures(page, folder, figures)
    return page


def _run_rows(folder: Path, listed: dict) -> list[tuple[dict, list[dict]]]:
    """One row per run folder beneath ``folder`` (listed ones first): group labels and the
    headline metrics (:data:`RUN_ROW_METRICS`) as ``results.json`` lists them, else from the
    run's ``metrics.json``."""
    names = list(listed) + sorted(
        p.name for p in folder.iterdir() if (p / "config.json").is_file() and p.name not in listed
    )
    rows = []
    for name in names:
        run = folder / name
        entry = listed.get(name) or {}
        summary = (
            entry
            if all(m in entry for m in RUN_ROW_METRICS)
            else (_read_json(run / "metrics.json") or {})
        )
        group = entry.get("group") or {}
        row = {"run": name, **{str(k): v for k, v in group.items()}}
        row.update({m: summary.get(m) for m in RUN_ROW_METRICS})
        rows.append((row, RunDir(run).read_history()))
    return rows


def _add_figures(page: Page, folder: Path, figures: list[tuple[str, str]]) -> None:
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


def build_page(folder: str | os.PathLike) -> Page:
    """The page of ``folder``: an experiment folder (``results.json``) or a run folder
    (``config.json``); anything else raises ``ValueError`` saying which files are missing."""
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(
            f"report folder {str(path)!r} does not exist; pass a run "
            "folder ('magnetdml train --out') or an experiment folder"
        )
    if (path / "results.json").is_file():
        return experiment_page(path)
    if (path / "config.json").is_file():
        return run_page(path)
    raise ValueError(
        f"{str(path)!r} is neither a run folder (no config.json) nor an "
        "experiment folder (no results.json); pass the folder that 'magnetdml "
        "train --out' or 'magnetdml experiment' wrote"
    )


def write_report(
    folder: str | os.PathLike, *, out_dir: str | os.PathLike | None = None, formats: str = "both"
) -> list[Path]:
    """Write ``report.html`` (self-contained) and/or ``report.md`` for ``folder`` into
    ``out_dir`` (default: ``folder``); returns the written paths."""
    check_choice("formats", formats, FORMATS)
    page = build_page(folder)
    out = Path(out_dir) if out_dir is not None else page.root
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if formats in ("both", "html"):
        written.append(out / "report.html")
        written[-1].write_text(render_html(page))
    if formats in ("both", "markdown"):
        written.append(out / "report.md")
        written[-1].write_text(render_markdown(page, out))
    return written
