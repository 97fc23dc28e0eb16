"""How this package draws: a matplotlib figure on an Agg canvas, saved as one PNG.

Figures use matplotlib's object-oriented API (``matplotlib.figure.Figure``), never ``pyplot``,
so importing or calling a plotting module changes no global backend or state (safe in
notebooks and headless servers) and figures are freed when the function returns. Shared by
the run pictures (:mod:`magnetdml.training.report_plots`) and the experiment and report
figures (:mod:`magnetdml.reporting.plots`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_figure(size: tuple[float, float] = (6.4, 4.4)) -> tuple[Figure, Any]:
    """A figure of ``size`` inches with one subplot, rendered by Agg: ``(figure, axes)``."""
    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)  # attaches the Agg canvas that savefig renders with
    return figure, figure.add_subplot()


def save_png(figure: Figure, path: str | os.PathLike) -> Path:
    """Write ``figure`` to ``path`` as a 120-dpi PNG (creating its folder); return the path."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike); got {path!r}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png", dpi=120)
    return out
