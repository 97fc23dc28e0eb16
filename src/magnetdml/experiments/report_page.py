"""An experiment's ``report.md``: its results dict (see :mod:`.runner`) as Markdown."""

from __future__ import annotations

from ..reporting import page as pages


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A Markdown table of ``rows`` (dicts) over ``columns`` (default: the first row's keys);
    error fractions are shown in percent, and so is ``X_std`` beside an ``X_error`` column (the
    spread of an error); other floats with 4 significant digits."""
    if not rows:
        return "(no rows)"
    return pages.markdown_table(rows, columns)


def render_report(results: dict) -> str:
    """``report.md``: title, command, hardware, tables, claims, notes and figures."""
    hw = results.get("hardware", {})
    text = [f"# Experiment `{results.get('experiment')}`"
            + (" (quick version)" if results.get("quick") else ""), "",
            str(results.get("description", "")), ""]
    partial = results.get("partial")
    if partial:
        text += [f"**Partial results: {partial['finished']} of {partial['total']} runs "
                 f"finished.** Missing: {', '.join(partial['missing'])}. Rerun the experiment "
                 "without --finished-only to train them (finished runs are skipped).", ""]
    if results.get("command"):
        text += [f"Command: `{results['command']}`", ""]
    if hw:
        text += [f"Hardware: {hw.get('cpu')}, {hw.get('cores')} cores, "
                 f"{hw.get('torch_threads')} torch thread(s), device {hw.get('device')}, "
                 f"torch {hw.get('torch')}. Runs: {len(results.get('runs', {}))}.", ""]
    if results.get("runs_trained"):
        text += [f"Wall time of the invocation that wrote this report: "
                 f"{results['wall_seconds'] / 60:.1f} min, training {results['runs_trained']} "
                 "of the runs (finished runs are skipped).", ""]
    if results.get("tuned"):
        rows = [{"search": name, "val_error": entry.get("val_error"),
                 "metric": entry.get("metric"), "trials": entry.get("trials"),
                 "pruned": entry.get("pruned"), **entry["params"]}
                for name, entry in results["tuned"].items()]
        text += ["## Tuned configurations", "",
                 "Each group of runs trained with the best trial of its own search "
                 f"(`{results.get('tuned_from')}/tuning/`), scored on a validation split by "
                 "its loss's own protocol (a blank cell: not searched for that loss):", "",
                 markdown_table(rows, list(dict.fromkeys(k for row in rows for k in row))), ""]
    for table in results.get("tables", []):
        text += [f"## {table['title']}", "", markdown_table(table["rows"], table.get("columns")),
                 ""]
    if results.get("claims"):
        text += ["## Claims checked", "", "| claim | holds | measured |", "|---|---|---|"]
        for claim in results["claims"]:
            holds = {True: "yes", False: "no", None: "n/a"}[claim.get("holds")]
            text.append(f"| {claim['claim']} | {holds} | {claim.get('detail', '')} |")
        text.append("")
    for note in results.get("notes", []):
        text += [note, ""]
    for figure in results.get("figures", []):
        text += [f"### {figure['title']}", "", f"![{figure['title']}]({figure['path']})", ""]
    return "\n".join(text)
