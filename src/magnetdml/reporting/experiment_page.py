"""The page of a results folder (``magnetdml experiment``, ``compare``, ``benchmark``): its
``results.json`` and one row and curve per run folder beneath it."""

from __future__ import annotations

from pathlib import Path

from ..training.run_dir import RunDir
from .page import Page
from .run_page import CURVES, TITLES, add_figures, draw_curves, error_curve, read_json

# The numbers of each run in an experiment's "Runs" table (its results.json keeps them too).
RUN_ROW_METRICS = ("knc_error", "knn_error", "error_at_5", "map_at_r", "nmi", "train_seconds")


def experiment_page(folder: Path) -> Page:
    """The page of a results folder: ``results.json`` of ``magnetdml experiment``, ``compare``
    or a benchmark (the keys below, all optional), one run folder per run beneath it.

    ``experiment``, ``quick``, ``description``, ``partial`` (``finished``, ``total``,
    ``missing``), ``command``, ``reanalysed_by``, ``hardware``, ``wall_seconds`` with
    ``runs_trained``, ``tuned`` (+ ``tuned_from``), ``tables`` (``title``, ``rows``,
    ``columns``), ``claims`` (``claim``, ``holds``, ``detail``), ``notes``, ``figures``
    (``title``, ``path``) and ``runs`` (name -> ``group``)."""
    results = read_json(folder / "results.json")
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
        curve = error_curve(history)
        if curve:
            curves[f"{row['run']} ({curve[0]})"] = curve[1]
    if draw_curves(folder, curves):
        figures.append((CURVES, TITLES[CURVES]))
    figures += [
        (f"{row['run']}/loss_curve.png", f"Training loss: {row['run']}")
        for row, _ in runs
        if (folder / row["run"] / "loss_curve.png").is_file()
    ]
    add_figures(page, folder, figures)
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
            else (read_json(run / "metrics.json") or {})
        )
        group = entry.get("group") or {}
        row = {"run": name, **{str(k): v for k, v in group.items()}}
        row.update({m: summary.get(m) for m in RUN_ROW_METRICS})
        rows.append((row, RunDir(run).read_history()))
    return rows
