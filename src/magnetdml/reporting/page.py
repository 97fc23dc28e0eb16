"""A report page and its two renderings: self-contained HTML and Markdown.

A :class:`Page` is a title and a list of blocks (headings, paragraphs, tables, figures, code);
paragraphs may hold Markdown's ``code`` and **bold**, rendered as such in both;
:func:`render_html` inlines every PNG as a base64 ``data:`` URI (no external CSS or script),
:func:`render_markdown` links them relatively. Table cells are formatted once, by
:func:`format_cell`, for both.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Page:
    """A report: its title and blocks ``(kind, *content)`` with kind one of ``h2``, ``p``,
    ``table`` (rows, columns), ``img`` (path relative to ``root``, title), ``pre``."""

    title: str
    root: Path
    blocks: list[tuple] = field(default_factory=list)

    def add(self, kind: str, *content: Any) -> None:
        self.blocks.append((kind, *content))


def format_cell(key: str, value: Any) -> str:
    """Errors (fractions) in percent, floats with 4 significant digits, None/NaN as n/a."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value if isinstance(value, str) else json.dumps(value, default=str)
    if isinstance(value, float):
        if "error" in key and "relative" not in key and -1.0 <= value <= 1.0:
            return f"{100 * value:.2f}%"  # a difference of errors may be negative
        return f"{value:.4g}"
    return str(value)


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;"
    "padding:0 1em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f0f0f0}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
    "table{display:block;overflow-x:auto}figure{margin:1em 0}"
    "pre{background:#f6f6f6;padding:1em;overflow:auto}"
)


def table_cells(rows: list[dict], columns: list[str] | None) -> tuple[list[str], list[list]]:
    """The columns (default: the first row's keys) and formatted cells of ``rows``; an
    ``X_std`` column beside ``X_error`` is the spread of an error and shown in percent too."""
    columns = list(columns or (rows[0] if rows else []))
    style = {
        c: f"{c[:-4]}_error" if c.endswith("_std") and f"{c[:-4]}_error" in columns else c
        for c in columns
    }
    return columns, [[format_cell(style[c], row.get(c)) for c in columns] for row in rows]


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """``rows`` as a Markdown table over ``columns`` (cells as :func:`table_cells` formats
    them; a ``|`` or line break inside a cell is escaped so the table stays one grid);
    ``(no rows)`` without rows."""
    if not rows:
        return "(no rows)"

    def cell(value: str) -> str:
        return value.replace("|", "\\|").replace("\n", " ")

    columns, cells = table_cells(rows, columns)
    lines = ["| " + " | ".join(map(cell, columns)) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in cells]
    return "\n".join(lines)


def render_html(page: Page) -> str:
    """One self-contained HTML document: PNGs inlined as base64 ``data:`` URIs."""
    esc = html.escape  # attribute values: quotes escaped

    def text_(value: str) -> str:  # element content: quotes stay readable in <pre> JSON
        return html.escape(str(value), quote=False)

    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(page.title)}"
        f"</title><style>{_STYLE}</style></head><body><h1>{esc(page.title)}</h1>"
    ]
    for kind, *content in page.blocks:
        if kind == "h2":
            parts.append(f"<h2>{esc(content[0])}</h2>")
        elif kind == "p":
            parts.append(f"<p>{_inline_markup(text_(content[0]))}</p>")
        elif kind == "pre":
            parts.append(f"<pre>{text_(content[0])}</pre>")
        elif kind == "table":
            columns, cells = table_cells(*content)
            head = "".join(f"<th>{esc(c)}</th>" for c in columns)
            body = "".join(
                "<tr>" + "".join(f"<td>{text_(v)}</td>" for v in row) + "</tr>" for row in cells
            )
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "img":
            data = base64.b64encode((page.root / content[0]).read_bytes()).decode("ascii")
            parts.append(
                f"<figure><img alt='{esc(content[1])}' src='data:image/png;base64,"
                f"{data}'><figcaption>{esc(content[1])}</figcaption></figure>"
            )
    return "\n".join(parts + ["</body></html>"]) + "\n"


def _inline_markup(escaped: str) -> str:
    """The Markdown a paragraph may hold, in escaped HTML: ``code`` and **bold**."""
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", escaped)


def render_markdown(page: Page, out_dir: Path) -> str:
    """Markdown with PNG links relative to ``out_dir`` (where the .md file goes)."""
    text = [f"# {page.title}", ""]
    for kind, *content in page.blocks:
        if kind == "h2":
            text += [f"## {content[0]}", ""]
        elif kind == "p":
            text += [content[0], ""]
        elif kind == "pre":
            text += ["```json", content[0], "```", ""]
        elif kind == "table":
            text += [markdown_table(*content), ""]
        elif kind == "img":
            link = Path(os.path.relpath(page.root / content[0], out_dir)).as_posix()
            text += [f"![{content[1]}]({link})", ""]
    return "\n".join(text)
