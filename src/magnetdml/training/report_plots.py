"""The pictures every run folder gets: loss curve, t-SNE before and after training.

Each ``plot_*`` function writes one PNG and returns its path, drawn on an Agg canvas without
``pyplot`` (see :mod:`magnetdml._figures`); :func:`plot_run` draws a finished run's three.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._figures import new_figure, save_png
from .._validation import as_embedding_matrix, as_label_vector, check_int
from .setup import make_index

INITIAL_SNAPSHOT = "embeddings_initial.npz"


def _history_arrays(history: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Accept ``{"loss": [...], "iteration": [...], "epoch": [...]}``, a list of such records
    (dicts with ``loss`` and optional ``iteration``/``epoch``), or a plain list of losses."""
    if isinstance(history, Mapping):
        columns = {k: list(history[k]) for k in ("loss", "iteration", "epoch") if k in history}
    elif isinstance(history, Sequence) and history and isinstance(history[0], Mapping):
        columns = {
            k: [row.get(k) for row in history]
            for k in ("loss", "iteration", "epoch")
            if k in history[0]
        }
    elif isinstance(history, Sequence) and not isinstance(history, (str, bytes)):
        columns = {"loss": list(history)}
    else:
        raise TypeError(
            f"history must be a dict of lists, a list of dicts or a list of losses; "
            f"got {type(history).__name__}"
        )
    if not columns.get("loss"):
        raise ValueError("history must hold at least one 'loss' value; got none")
    loss = np.asarray(columns["loss"], dtype=np.float64)
    iteration = np.asarray(columns.get("iteration", np.arange(1, loss.size + 1)), np.float64)
    epoch = np.asarray(columns["epoch"], np.float64) if "epoch" in columns else None
    for key, column in (("iteration", iteration), ("epoch", epoch)):
        if column is not None and column.shape != loss.shape:
            raise ValueError(
                f"history['{key}'] must have one entry per loss ({loss.size}); got {column.size}"
            )
    return iteration, loss, epoch


def plot_loss_curve(
    history: Any,
    path: str | os.PathLike,
    *,
    title: str = "Training loss",
    smooth: int | None = None,
) -> Path:
    """Training loss against iteration: raw values, a moving average over ``smooth`` steps
    (default: about 1/50 of the run) and a marker at the last iteration of every epoch."""
    iteration, loss, epoch = _history_arrays(history)
    window = max(1, loss.size // 50) if smooth is None else check_int("smooth", smooth, minimum=1)
    figure, ax = new_figure()
    ax.plot(
        iteration,
        loss,
        color="tab:blue",
        alpha=0.35 if window > 1 else 1.0,
        lw=0.8,
        label="loss" if window == 1 else "loss (per step)",
    )
    if window > 1 and loss.size >= window:
        # Moving average over valid positions only, plotted at the window's last iteration.
        kernel = np.ones(window) / window
        ax.plot(
            iteration[window - 1 :],
            np.convolve(loss, kernel, mode="valid"),
            color="tab:blue",
            lw=1.8,
            label=f"moving average ({window} steps)",
        )
    if epoch is not None and epoch.size > 1:
        ends = np.flatnonzero(np.diff(epoch) != 0)  # last step of each finished epoch
        ends = np.append(ends, epoch.size - 1)
        ax.plot(iteration[ends], loss[ends], "o", color="tab:orange", ms=5, label="epoch end")
    ax.set(xlabel="iteration", ylabel="loss", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_png(figure, path)


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
    return TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(
        joint.astype(np.float64)
    )


def plot_embedding(
    embeddings: Any,
    labels: Any,
    path: str | os.PathLike,
    centroids: Any = None,
    centroid_labels: Any = None,
    *,
    title: str = "Embedding (t-SNE)",
    seed: int = 0,
    max_points: int = 2000,
    perplexity: float = 30.0,
) -> Path:
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
            raise ValueError(
                f"centroids must have the embeddings' dimension "
                f"{points.shape[1]}; got {centres.shape[1]}"
            )
        if centroid_labels is None:
            raise ValueError(
                "centroid_labels is required with centroids (one class per centre, "
                "e.g. index.centroid_labels_)"
            )
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
    figure, ax = new_figure((6.4, 5.6))
    ax.scatter(
        xy[: y.size, 0],
        xy[: y.size, 1],
        c=colours[np.searchsorted(classes, y)],
        s=6,
        alpha=0.7,
        linewidths=0,
    )
    if centre_y.size:
        ax.scatter(
            xy[y.size :, 0],
            xy[y.size :, 1],
            c=colours[np.searchsorted(classes, centre_y)],
            s=120,
            marker="X",
            edgecolors="black",
            linewidths=1.0,
            label="cluster centre",
        )
    if classes.size <= 20:  # a legend of hundreds of classes hides the map
        for colour, label in zip(colours, classes, strict=True):
            ax.scatter([], [], color=colour, s=20, label=f"class {label}")
    if classes.size <= 20 or centre_y.size:
        ax.legend(fontsize=7, markerscale=0.8, loc="best", ncols=2)
    ax.set(title=f"{title} ({y.size} points)", xticks=[], yticks=[])
    return save_png(figure, path)


def plot_run(run_dir: Path, trainer) -> list[Path]:
    """Write ``loss_curve.png``, ``tsne_initial.png`` and ``tsne_final.png`` into the run."""
    iterations, losses = zip(*trainer.loss_curve, strict=True)
    written = [
        plot_loss_curve({"iteration": iterations, "loss": losses}, run_dir / "loss_curve.png")
    ]
    initial = run_dir / INITIAL_SNAPSHOT
    if initial.exists():
        with np.load(initial) as snap:
            written.append(
                plot_embedding(
                    snap["embeddings"],
                    snap["labels"],
                    run_dir / "tsne_initial.png",
                    centroids=snap["centroids"],
                    centroid_labels=snap["centroid_labels"],
                    title="test embeddings before training",
                    seed=trainer.config.train.seed,
                )
            )
    index = trainer.index
    if index is None:  # losses without an index: centres of a k-means fit, for the picture
        index = make_index(trainer.config).fit(trainer.train_embeddings(), trainer.labels)
    written.append(
        plot_embedding(
            trainer.evaluation.final_test_embeddings,
            trainer.splits.test.labels,
            run_dir / "tsne_final.png",
            centroids=index.centroids_,
            centroid_labels=index.centroid_labels_,
            title="test embeddings after training",
            seed=trainer.config.train.seed,
        )
    )
    return written


def snapshot_for_plots(trainer) -> dict:
    """Test embeddings and cluster centres now: the "initial distribution" picture.
    Call it on every rank (the embedding passes are sharded); rank 0 gets the snapshot."""
    queries = trainer.embed(trainer.splits.test)
    reference = trainer.train_embeddings() if trainer.index is None else None

    def snapshot() -> dict:
        index = (
            trainer.index
            if reference is None
            else make_index(trainer.config).fit(reference, trainer.labels)
        )
        return {
            "embeddings": queries,
            "labels": trainer.splits.test.labels,
            "centroids": index.centroids_,
            "centroid_labels": index.centroid_labels_,
        }

    return trainer.dist.on_main(snapshot)


def save_initial(trainer, snapshot: dict | None) -> None:
    """Keep the snapshot in the run folder: ``tsne_initial.png`` is drawn from it at the end
    (also after a resume)."""
    if snapshot is not None and trainer.run is not None:
        np.savez_compressed(trainer.run.path / INITIAL_SNAPSHOT, **snapshot)
