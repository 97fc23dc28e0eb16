"""Pictures of examples: a grid of images with captions (retrieval results, cluster sheets).

Each image is ``(C, H, W)`` or ``(H, W)`` with values in ``0..pixel_max`` (as a loader stores them),
grey (``C = 1``) or RGB (``C = 3``); ``None`` leaves a cell empty.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .._figures import save_png


def save_image_grid(
    rows: Sequence[Sequence[np.ndarray | None]],
    path: str | os.PathLike,
    *,
    captions: Sequence[Sequence[str]] | None = None,
    pixel_max: float = 255.0,
    title: str | None = None,
    cell: float = 1.2,
) -> Path:
    """One PNG of ``rows`` of images (each row as long as the longest), ``captions`` under
    them; returns the path."""
    n_rows, n_cols = len(rows), max((len(r) for r in rows), default=0)
    if not n_rows or not n_cols:
        raise ValueError("save_image_grid needs at least one image")
    figure = Figure(
        figsize=(cell * n_cols, (cell + 0.25) * n_rows + (0.4 if title else 0)),
        layout="constrained",
    )
    FigureCanvasAgg(figure)
    axes = figure.subplots(n_rows, n_cols, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_axis_off()
            image = row[c] if c < len(row) else None
            if image is None:
                continue
            image = np.asarray(image, dtype=np.float64) / pixel_max
            if image.ndim == 3:
                image = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
            ax.imshow(
                np.clip(image, 0, 1),
                cmap="gray" if image.ndim == 2 else None,
                vmin=0,
                vmax=1,
                interpolation="nearest",
            )
            if captions is not None and c < len(captions[r]):
                ax.set_title(captions[r][c], fontsize=7)
    if title:
        figure.suptitle(title, fontsize=9)
    return save_png(figure, path)
