"""Reporting (layer 6): report pages of run and experiment folders, and their figures.

* :mod:`~magnetdml.reporting.report`: gathers a folder's files into a page (``magnetdml report``);
* :mod:`~magnetdml.reporting.page`: the page and its HTML and Markdown renderings;
* :mod:`~magnetdml.reporting.plots`: error curves, attribute concentration and error bars
  (imported on first use: it pulls in matplotlib).
"""

from .page import Page, format_cell, markdown_table, render_html, render_markdown, table_cells
from .report import FORMATS, build_page, experiment_page, run_page, write_report

__all__ = [
    "FORMATS",
    "Page",
    "build_page",
    "experiment_page",
    "format_cell",
    "markdown_table",
    "render_html",
    "render_markdown",
    "run_page",
    "table_cells",
    "write_report",
]
