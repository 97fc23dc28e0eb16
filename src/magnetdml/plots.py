"""Figures of training and evaluation: loss curves, t-SNE maps, error curves and bars.

Each function writes one PNG and returns its path. Figures are drawn with matplotlib's
object-oriented API on an Agg canvas (``matplotlib.figure.Figure``), never ``pyplot``, so
importing or calling this module changes no global backend or state (safe in notebooks and
headless servers) and figures are freed when the function returns.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ._validation import as_embedding_matrix, as_label_vector, check_int

Curve = Sequence[tuple[float, float]] | Mapping[float, float]


def _figure(size: tuple[float, float] = (6.4, 4.4)) -> tuple[Figure, Any]:
    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)  # attaches the Agg canvas that savefig renders with
    return figure, figure.add_subplot()


def _save(figure: Figure, path: str | os.PathLike) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike); got {path!r}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png", dpi=120)
    return out


def _as_curve(name: str, points: Any) -> tuple[np.ndarray, np.ndarray]:
    """``[(x, y), ...]`` or ``{x: y}`` -> two float arrays sorted by x, or raise."""
    if isinstance(points, Mapping):
        points = list(points.items())
    array = np.asarray(points, dtype=np.float64) if len(points) else np.empty((0, 2))
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty list of (x, y) pairs or a {{x: y}} dict; "
                         f"got shape {array.shape}")
    order = np.argsort(array[:, 0], kind="stable")
    return array[order, 0], array[order, 1]


def _as_curves(name: str, curves: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError(f"{name} must be a non-empty dict {{loss name: [(x, y), ...]}}; "
                         f"got {type(curves).__name__}")
    return {str(key): _as_curve(f"{name}[{key!r}]", value) for key, value in curves.items()}


def _history_arrays(history: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Accept ``{"loss": [...], "iteration": [...], "epoch": [...]}``, a list of such records
    (dicts with ``loss`` and optional ``iteration``/``epoch``), or a plain list of losses."""
    if isinstance(history, Mapping):
        columns = {k: list(history[k]) for k in ("loss", "iteration", "epoch") if k in history}
    elif isinstance(history, Sequence) and history and isinstance(history[0], Mapping):
        columns = {k: [row.get(k) for row in history] for k in ("loss", "iteration", "epoch")
                   if k in history[0]}
    elif isinstance(history, Sequence) and not isinstance(history, (str, bytes)):
        columns = {"loss": list(history)}
    else:
        raise TypeError(f"history must be a dict of lists, a list of dicts or a list of losses; "
                        f"got {type(history).__name__}")
    if not columns.get("loss"):
        raise ValueError("history must hold at least one 'loss' value; got none")
    loss = np.asarray(columns["loss"], dtype=np.float64)
    iteration = np.asarray(columns.get("iteration", np.arange(1, loss.size + 1)), np.float64)
    epoch = np.asarray(columns["epoch"], np.float64) if "epoch" in columns else None
    for key, column in (("iteration", iteration), ("epoch", epoch)):
        if column is not None and column.shape != loss.shape:
            raise ValueError(f"history['{key}'] must have one entry per loss ({loss.size}); "
                             f"got {column.size}")
    return iteration, loss, epoch


def plot_loss_curve(history: Any, path: str | os.PathLike, *, title: str = "Training loss",
                    smooth: int | None = None) -> Path:
    """Training loss against iteration: raw values, a moving average over ``smooth`` steps
    (default: about 1/50 of the run) and a marker at the last iteration of every epoch."""
    iteration, loss, epoch = _history_arrays(history)
    window = max(1, loss.size // 50) if smooth is None else check_int("smooth", smooth, minimum=1)
    figure, ax = _figure()
    ax.plot(iteration, loss, color="tab:blue", alpha=0.35 if window > 1 else 1.0, lw=0.8,
            label="loss" if window == 1 else "loss (per step)")
    if window > 1 and loss.size >= window:
        # Moving average over valid positions only, plotted at the window's last iteration.
        kernel = np.ones(window) / window
        ax.plot(iteration[window - 1:], np.convolve(loss, kernel, mode="valid"),
                color="tab:blue", lw=1.8, label=f"moving average ({window} steps)")
    if epoch is not None and epoch.size > 1:
        ends = np.flatnonzero(np.diff(epoch) != 0)  # last step of each finished epoch
        ends = np.append(ends, epoch.size - 1)
        ax.plot(iteration[ends], loss[ends], "o", color="tab:orange", ms=5, label="epoch end")
    ax.set(xlabel="iteration", ylabel="loss", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(figure, path)


def _class_colours(n: int) -> np.ndarray:
    from matplotlib import colormaps

    if n <= 10:
        return colormaps["tab10"](np.arange(n))
    if n <= 20:
        return colormaps["tab20"](np.arange(n))
    return colormaps["turbo"](np.linspace(0.0, 1.0, n))


def _map_2d(joint: np.ndarray, seed: int, perplexity: float) -> np.ndarray:
    """t-SNE of ``joint (n, D)`` to ``(n, 2)``; 2-D input is returned as it is."""
    if joint.shape[1] == 2:
        return joint
    from sklearn.manifold import TSNE  # imported here: TSNE pulls in scipy machinery

    # perplexity must stay below the sample count; (n - 1) / 3 is the usual ceiling.
    perp = float(min(perplexity, max(1.0, (joint.shape[0] - 1) / 3)))
    return TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed
                ).fit_transform(joint.astype(np.float64))


def plot_embedding(embeddings: Any, labels: Any, path: str | os.PathLike, centroids: Any = None,
                   centroid_labels: Any = None, *, title: str = "Embedding (t-SNE)",
                   seed: int = 0, max_points: int = 2000, perplexity: float = 30.0) -> Path:
    """2-D t-SNE map of a seeded subsample of ``embeddings (N, D)`` coloured by ``labels (N,)``.

    ``centroids (K, D)`` (e.g. a cluster index's ``centroids_``) are embedded jointly with the
    points, so they land in the same map, and drawn as large crosses in the colour of
    ``centroid_labels (K,)``. With ``D == 2`` the coordinates are drawn as they are. The
    "initial / final distribution" pictures of Rippel et al. (2016) Fig. 3 / student seed 001.
    """
    points = as_embedding_matrix("embeddings", embeddings)
    y = as_label_vector("labels", labels, points.shape[0])
    max_points = check_int("max_points", max_points, minimum=2)
    seed = check_int("seed", seed, minimum=0)
    centres = np.empty((0, points.shape[1]), np.float32)
    centre_y = np.empty(0, np.int64)
    if centroids is not None:
        centres = as_embedding_matrix("centroids", centroids)
        if centres.shape[1] != points.shape[1]:
            raise ValueError(f"centroids must have the embeddings' dimension "
                             f"{points.shape[1]}; got {centres.shape[1]}")
        if centroid_labels is None:
            raise ValueError("centroid_labels is required with centroids (one class per centre, "
                             "e.g. index.centroid_labels_)")
        centre_y = as_label_vector("centroid_labels", centroid_labels, centres.shape[0])
    if points.shape[0] < 2:
        raise ValueError(f"embeddings must hold at least 2 points; got {points.shape[0]}")
    rng = np.random.default_rng(seed)
    if points.shape[0] > max_points:
        keep = np.sort(rng.choice(points.shape[0], max_points, replace=False))
        points, y = points[keep], y[keep]
    xy = _map_2d(np.concatenate([points, centres]), seed, perplexity)  # (n + K, 2)
    classes = np.unique(np.concatenate([y, centre_y]))
    colours = _class_colours(classes.size)
    figure, ax = _figure((6.4, 5.6))
    ax.scatter(xy[: y.size, 0], xy[: y.size, 1], c=colours[np.searchsorted(classes, y)], s=6,
               alpha=0.7, linewidths=0)
    if centre_y.size:
        ax.scatter(xy[y.size:, 0], xy[y.size:, 1], c=colours[np.searchsorted(classes, centre_y)],
                   s=120, marker="X", edgecolors="black", linewidths=1.0, label="cluster centre")
    if classes.size <= 20:  # a legend of hundreds of classes hides the map
        for colour, label in zip(colours, classes, strict=True):
            ax.scatter([], [], color=colour, s=20, label=f"class {label}")
    if classes.size <= 20 or centre_y.size:
        ax.legend(fontsize=7, markerscale=0.8, loc="best", ncols=2)
    ax.set(title=f"{title} ({y.size} points)", xticks=[], yticks=[])
    return _save(figure, path)


def first_iteration_reaching(curve: Curve, error: float) -> float | None:
    """The first iteration of ``curve`` ``[(iteration, error), ...]`` whose error is at most
    ``error`` (paper Fig. 5: when each loss reached triplet's final error), or None."""
    iteration, values = _as_curve("curve", curve)
    hits = np.flatnonzero(values <= error)
    return float(iteration[hits[0]]) if hits.size else None


def plot_error_curves(curves: Mapping[str, Curve], path: str | os.PathLike,
                      markers: Mapping[str, Any] | None = None, *,
                      title: str = "Test error during training",
                      ylabel: str = "test error", marker_label: str | None = None) -> Path:
    """Test error against iteration, one line per loss (paper Fig. 5). ``markers`` maps a
    loss to an iteration (its error is read off its curve) or an ``(iteration, error)`` pair,
    drawn as red diamonds: e.g. where each loss first reached triplet's final error
    (``marker_label`` names them in the legend, e.g. "reached triplet's final error")."""
    data = _as_curves("curves", curves)
    figure, ax = _figure()
    for name, (x, y) in data.items():
        ax.plot(x, y, marker="." if x.size <= 30 else None, lw=1.5, label=name)
    for name, mark in (markers or {}).items():
        if mark is None:
            continue
        if isinstance(mark, (int, float, np.integer, np.floating)):
            if str(name) not in data:
                raise ValueError(f"markers[{name!r}] is an iteration, so it needs a curve of the "
                                 f"same name; curves has {sorted(data)}")
            x, y = data[str(name)]
            mark = (float(mark), float(np.interp(float(mark), x, y)))
        mx, my = (float(v) for v in mark)
        ax.plot([mx], [my], "D", color="red", ms=8, mec="black", zorder=5, label=marker_label)
        marker_label = None  # one legend entry for all diamonds
    ax.set(xlabel="iteration", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(figure, path)


def plot_attribute_concentration(curves: Mapping[str, Curve], path: str | os.PathLike, *,
                                 title: str = "Attribute concentration") -> Path:
    """Mean fraction of the k nearest neighbours sharing the query's attribute against the
    neighbourhood size k, one line per loss (paper Fig. 6)."""
    data = _as_curves("curves", curves)
    figure, ax = _figure()
    for name, (k, fraction) in data.items():
        ax.plot(k, fraction, marker="o" if k.size <= 30 else None, ms=3, lw=1.5, label=name)
    if max(k.max() for k, _ in data.values()) > 50 * min(k.min() for k, _ in data.values()):
        ax.set_xscale("log")  # sizes spanning decades (1..1000) are unreadable on a linear axis
    ax.set(xlabel="neighbourhood size k", ylabel="fraction of neighbours sharing the attribute",
           title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(figure, path)


def plot_error_bars(results: Mapping[str, Any], path: str | os.PathLike, *,
                    title: str = "Test error over seeds", ylabel: str = "test error") -> Path:
    """Per-loss mean error (bar) with the seed spread: +-1 sample standard deviation and
    every seed's value as a dot. ``results`` maps a loss name to its errors over seeds."""
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty dict {loss name: [error per seed]}; "
                         f"got {type(results).__name__}")
    values = {}
    for name, errors in results.items():
        array = np.atleast_1d(np.asarray(errors, dtype=np.float64))
        if array.ndim != 1 or array.size == 0 or not np.isfinite(array).all():
            raise ValueError(f"results[{name!r}] must be a non-empty list of finite errors; "
                             f"got {errors!r}")
        values[str(name)] = array
    means = np.array([v.mean() for v in values.values()])
    spreads = np.array([v.std(ddof=1) if v.size > 1 else 0.0 for v in values.values()])
    figure, ax = _figure((max(4.0, 1.2 * len(values) + 2), 4.4))
    positions = np.arange(len(values))
    ax.bar(positions, means, yerr=spreads, capsize=6, color="tab:blue", alpha=0.6)
    for pos, (mean, array) in enumerate(zip(means, values.values(), strict=True)):
        ax.plot(np.full(array.size, pos), array, "o", color="black", ms=3, zorder=3)
        digits = max(2, 2 - int(math.floor(math.log10(abs(mean))))) if mean else 2
        ax.annotate(f"{mean:.{digits}f}", (pos, mean), textcoords="offset points",
                    xytext=(8, 4), fontsize=8)
    counts = sorted({v.size for v in values.values()})
    ax.set_xticks(positions, list(values), rotation=20 if len(values) > 4 else 0)
    ax.set(ylabel=ylabel, title=f"{title} (n = {', '.join(map(str, counts))} seeds)")
    ax.grid(axis="y", alpha=0.3)
    return _save(figure, path)
