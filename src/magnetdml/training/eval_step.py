"""Evaluation of the model being trained (paper §3.3): kNC and soft-kNN test errors.

During training the loop scores the test split every ``eval.every`` epochs; at the end,
:meth:`EvaluationStep.finish` runs the full evaluation (every metric of ``evaluate``, and the
unseen classes when the dataset holds some out) and writes ``metrics.json``.

:class:`EvaluationStep` is a part of :class:`~magnetdml.training.trainer.Trainer`: its
methods work on the trainer's model, splits, index and timing.
"""

from __future__ import annotations

import copy

import numpy as np

from ..evaluation import KNearestClusters, cluster_variance, evaluate
from .class_scores import classifier_metrics
from .embed import embed_dataset
from .setup import make_index

#: Unseen classes (the reality-check protocol: MAP@R, R-precision, P@1, R@1, NMI) and seed
#: 003's NMI / F1 after k-means and Recall@K.
UNSEEN_METRICS = ["map_at_r", "r_precision", "precision_at_1", "nmi", "f1", "recall_at_1",
                  "recall_at_2", "recall_at_4", "recall_at_8"]


class EvaluationStep:
    """The trainer's test-split scoring and final summary."""

    def embed(self, dataset) -> np.ndarray:
        """Embeddings of a test-like split (with test-time averaging when configured)."""
        self.dist.broadcast_buffers(self.model)
        return embed_dataset(self.model, dataset, device=self.dist.device, dist=self.dist,
                             augment=self.augmenter, copies=self.config.eval.test_time_augment)

    def evaluate(self, dataset=None, *, queries: np.ndarray | None = None,
                 full: bool = False) -> dict:
        """kNC and soft-kNN test errors (paper §3.3) against the training set's embeddings;
        ``full`` adds every other class-score and retrieval metric of ``evaluate``.
        Losses without an index get one fitted now, with ``sigma^2`` from its clusters."""
        dataset = dataset if dataset is not None else self.splits.test
        queries = self.embed(dataset) if queries is None else queries   # sharded passes
        reference = self.train_embeddings()

        def scores() -> dict:   # on rank 0 only, then shared
            index, variance = self._scoring_index(reference)
            knc = KNearestClusters(neighbours=self.config.eval.neighbours).fit(index, variance)
            metrics = {"knc_error": float(np.mean(knc.predict(queries) != dataset.labels))}
            metrics.update(evaluate(queries, dataset.labels, reference=reference,
                                    reference_labels=self.labels,
                                    metrics=None if full else ["knn_error"],
                                    k=self.config.eval.knn_k))
            if self.config.loss.spec().own_scores == "classifier":
                metrics.update(classifier_metrics(self.loss_fn, queries, dataset.labels))
            return metrics

        return self.dist.broadcast_object(self.dist.on_main(scores))

    def _scoring_index(self, reference: np.ndarray):
        """The cluster index and ``sigma^2`` that kNC scores ``reference`` (the training
        embeddings) with. A fitted or refreshed one is kept for as long as ``reference`` is
        the same array, so the validation and test scores of one pass share one fit."""
        variance = (None if self.variance is None
                    else self.config.loss.knc_variance(self.variance))
        if self.index is not None and self.index_iteration == self.iteration:
            return self.index, variance
        cached = self._scoring_cache
        if cached is not None and cached[0] is reference:
            return cached[1], cached[2]
        if self.index is not None:
            # between refreshes (adaptive or every-N schedules) the training index is stale:
            # kNC uses the current model's clusters (paper §3.3: the final index), in a copy
            # so that evaluating never changes the training run
            index = copy.deepcopy(self.index).refresh(reference, self.labels)
        else:
            index = make_index(self.config).fit(reference, self.labels)
            variance = cluster_variance(reference, index)
        self._scoring_cache = (reference, index, variance)
        return index, variance

    def finish(self, write: bool = True) -> dict:
        """Full evaluation of the final model (and of unseen classes, when the dataset has a
        class-disjoint split); written to ``metrics.json`` (with ``write``), the file that
        marks the run finished."""
        self.apply_pending_refresh(wait=True)
        summary = {"dataset": self.config.data.name, "loss": self.config.loss.name,
                   "backbone": self.config.model.backbone, "run_dir": self.config.out,
                   "epochs": self.epoch, "iterations": self.iteration, "sigma2": self.variance,
                   **self.stopping_summary()}
        if self.config.eval.final:      # off: a search trial, scored on its validation split
            self.final_test_embeddings = self.embed(self.splits.test)
            summary.update(self.evaluate(queries=self.final_test_embeddings, full=True))
        if self.splits.unseen is not None and self.config.eval.final:
            unseen = self.embed(self.splits.unseen)
            summary["unseen"] = self.dist.broadcast_object(self.dist.on_main(
                lambda: evaluate(unseen, self.splits.unseen.labels, metrics=UNSEEN_METRICS,
                                 seed=self.config.train.seed)))
        if self.index is not None:
            summary["clusters"] = int(self.index.n_clusters_)
        seconds = self.timing["train_seconds"]
        summary.update(self.timing)
        summary["images_per_second"] = self.timing["images"] / seconds if seconds else None
        if self.run is not None and write:
            self.run.write_summary(summary)
        return summary
