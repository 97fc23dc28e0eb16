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

import os
from pathlib import Path

from .._validation import check_choice
from .experiment_page import experiment_page
from .page import Page, render_html, render_markdown
from .run_page import run_page

FORMATS = ("both", "html", "markdown")


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
