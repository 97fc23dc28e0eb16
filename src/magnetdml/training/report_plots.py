"""The pictures every run folder gets: loss curve, t-SNE before and after training."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import plots

INITIAL_SNAPSHOT = "embeddings_initial.npz"


def plot_run(run_dir: Path, trainer) -> list[Path]:
    """Write ``loss_curve.png``, ``tsne_initial.png`` and ``tsne_final.png`` into the run."""
    iterations, losses = zip(*trainer.loss_curve, strict=True)
    written = [plots.plot_loss_curve({"iteration": iterations, "loss": losses},
                                     run_dir / "loss_curve.png")]
    initial = run_dir / INITIAL_SNAPSHOT
    if initial.exists():
        with np.load(initial) as snap:
            written.append(plots.plot_embedding(
                snap["embeddings"], snap["labels"], run_dir / "tsne_initial.png",
                centroids=snap["centroids"], centroid_labels=snap["centroid_labels"],
                title="test embeddings before training", seed=trainer.config.train.seed))
    index = trainer.index
    if index is None:   # losses without an index: centres of a k-means fit, for the picture
        from .setup import make_index
        index = make_index(trainer.config).fit(trainer.train_embeddings(), trainer.labels)
    written.append(plots.plot_embedding(
        trainer.final_test_embeddings, trainer.splits.test.labels, run_dir / "tsne_final.png",
        centroids=index.centroids_, centroid_labels=index.centroid_labels_,
        title="test embeddings after training", seed=trainer.config.train.seed))
    return written
