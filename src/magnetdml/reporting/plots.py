"""Figures of experiments and reports: error curves, attribute concentration, error bars.

Each function writes one PNG and returns its path, drawn on an Agg canvas without ``pyplot``
(see :mod:`magnetdml._figures`). The pictures every run folder gets (loss curve, t-SNE maps)
are drawn by the training layer, in :mod:`magnetdml.training.report_plots`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._figures import new_figure, save_png

Curve = Sequence[tuple[float, float]] | Mapping[float, float]


def _as_curve(name: str, points: Any) -> tuple[np.ndarray, np.ndarray]:
    """``[(x, y), ...]`` or ``{x: y}`` -> two float arrays sorted by x, or raise."""
    if isinstance(points, Mapping):
        points = list(points.items())
    array = np.asarray(points, dtype=np.float64) if len(points) else np.empty((0, 2))
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty list of (x, y) pairs or a {{x: y}} dict; "
            f"got shape {array.shape}"
        )
    order = np.argsort(array[:, 0], kind="stable")
    return array[order, 0], array[order, 1]


def _as_curves(name: str, curves: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError(
            f"{name} must be a non-empty dict {{loss name: [(x, y), ...]}}; "
            f"got {type(curves).__name__}"
        )
    return {str(key): _as_curve(f"{name}[{key!r}]", value) for key, value in curves.items()}


def first_iteration_reaching(curve: Curve, error: float) -> float | None:
    """The first iteration of ``curve`` ``[(iteration, error), ...]`` whose error is at most
    ``error`` (paper Fig. 5: when each loss reached triplet's final error), or None."""
    iteration, values = _as_curve("curve", curve)
    hits = np.flatnonzero(values <= error)
    return float(iteration[hits[0]]) if hits.size else None


def plot_error_curves(
    curves: Mapping[str, Curve],
    path: str | os.PathLike,
    markers: Mapping[str, Any] | None = None,
    *,
    title: str = "Test error during training",
    ylabel: str = "test error",
    marker_label: str | None = None,
) -> Path:
    """Test error against iteration, one line per loss (paper Fig. 5). ``markers`` maps a
    loss to an iteration (its error is read off its curve) or an ``(iteration, error)`` pair,
    drawn as red diamonds: e.g. where each loss first reached triplet's final error
    (``marker_label`` names them in the legend, e.g. "reached triplet's final error")."""
    data = _as_curves("curves", curves)
    figure, ax = new_figure()
    for name, (x, y) in data.items():
        ax.plot(x, y, marker="." if x.size <= 30 else None, lw=1.5, label=name)
    for name, mark in (markers or {}).items():
        if mark is None:
            continue
        if isinstance(mark, (int, float, np.integer, np.floating)):
            if str(name) not in data:
                raise ValueError(
                    f"markers[{name!r}] is an iteration, so it needs a curve of the "
                    f"same name; curves has {sorted(data)}"
                )
            x, y = data[str(name)]
            mark = (float(mark), float(np.interp(float(mark), x, y)))
        mx, my = (float(v) for v in mark)
        ax.plot([mx], [my], "D", color="red", ms=8, mec="black", zorder=5, label=marker_label)
        marker_label = None  # one legend entry for all diamonds
    ax.set(xlabel="iteration", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_png(figure, path)


def plot_attribute_concentration(
    curves: Mapping[str, Curve], path: str | os.PathLike, *, title: str = "Attribute concentration"
) -> Path:
    """Mean fraction of the k nearest neighbours sharing the query's attribute against the
    neighbourhood size k, one line per loss (paper Fig. 6)."""
    data = _as_curves("curves", curves)
    figure, ax = new_figure()
    for name, (k, fraction) in data.items():
        ax.plot(k, fraction, marker="o" if k.size <= 30 else None, ms=3, lw=1.5, label=name)
    if max(k.max() for k, _ in data.values()) > 50 * min(k.min() for k, _ in data.values()):
        ax.set_xscale("log")  # sizes spanning decades (1..1000) are unreadable on a linear axis
    ax.set(
        xlabel="neighbourhood size k",
        ylabel="fraction of neighbours sharing the attribute",
        title=title,
    )
    ax.grid(alpha=0.3)
    ax.legend()
    return save_png(figure, path)


def plot_error_bars(
    results: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    title: str = "Test error over seeds",
    ylabel: str = "test error",
) -> Path:
    """Per-loss mean error (bar) with the seed spread: +-1 sample standard deviation and
    every seed's value as a dot. ``results`` maps a loss name to its errors over seeds."""
    if not isinstance(results, Mapping) or not results:
        raise ValueError(
            "results must be a non-empty dict {loss name: [error per seed]}; "
            f"got {type(results).__name__}"
        )
    values = {}
    for name, errors in results.items():
        array = np.atleast_1d(np.asarray(errors, dtype=np.float64))
        if array.ndim != 1 or array.size == 0 or not np.isfinite(array).all():
            raise ValueError(
                f"results[{name!r}] must be a non-empty list of finite errors; got {errors!r}"
            )
        values[str(name)] = array
    means = np.array([v.mean() for v in values.values()])
    spreads = np.array([v.std(ddof=1) if v.size > 1 else 0.0 for v in values.values()])
    figure, ax = new_figure((max(4.0, 1.2 * len(values) + 2), 4.4))
    positions = np.arange(len(values))
    ax.bar(positions, means, yerr=spreads, capsize=6, color="tab:blue", alpha=0.6)
    for pos, (mean, array) in enumerate(zip(means, values.values(), strict=True)):
        ax.plot(np.full(array.size, pos), array, "o", color="black", ms=3, zorder=3)
        digits = max(2, 2 - int(math.floor(math.log10(abs(mean))))) if mean else 2
        ax.annotate(
            f"{mean:.{digits}f}", (pos, mean), textcoords="offset points", xytext=(8, 4), fontsize=8
        )
    counts = sorted({v.size for v in values.values()})
    ax.set_xticks(positions, list(values), rotation=20 if len(values) > 4 else 0)
    ax.set(ylabel=ylabel, title=f"{title} (n = {', '.join(map(str, counts))} seeds)")
    ax.grid(axis="y", alpha=0.3)
    return save_png(figure, path)
