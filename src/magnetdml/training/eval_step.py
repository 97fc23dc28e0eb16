"""Evaluation of the model being trained (paper §3.3): kNC and soft-kNN test errors.

During training the loop scores the test split every ``eval.every`` epochs; at the end,
:meth:`~magnetdml.training.trainer.Trainer.finish` runs the full evaluation (every metric of
``evaluate``, and the unseen classes when the dataset holds some out) and writes
``metrics.json``.

:class:`Evaluation` is one part of :class:`~magnetdml.training.trainer.Trainer`: it embeds
test-like splits and scores them; the trainer passes in the model, the training embeddings
and what kNC scores with (:func:`magnetdml.evaluation.fit_knc`).
"""

from __future__ import annotations

import numpy as np

from ..evaluation import UNSEEN_METRICS, KNearestClusters, evaluate, fit_knc, knc_errors
from .class_scores import classifier_metrics
from .embed import embed_dataset
from .setup import make_index


class Evaluation:
    """Scores of test-like splits against the training set's embeddings.

    State: ``final_test_embeddings`` (the last model's test embeddings, for the plots) and
    the kNC classifier of the last training embeddings scored against (so the validation and
    the test scores of one pass share one index fit)."""

    def __init__(self, config, dist, augmenter, loss_fn) -> None:
        self.config, self.dist, self.augmenter = config, dist, augmenter
        # scored by its own class scores too when its spec says so (softmax, proxy losses)
        self.own_classifier = loss_fn if config.loss.spec().own_scores == "classifier" else None
        self.final_test_embeddings: np.ndarray | None = None
        self._knc: tuple | None = None  # (reference, key, classifier)

    def embed(self, model, dataset) -> np.ndarray:
        """Embeddings of a test-like split (with test-time averaging when configured)."""
        self.dist.broadcast_buffers(model)
        return embed_dataset(
            model,
            dataset,
            device=self.dist.device,
            dist=self.dist,
            augment=self.augmenter,
            copies=self.config.eval.test_time_augment,
        )

    def knc(
        self,
        reference: np.ndarray,
        reference_labels: np.ndarray,
        *,
        index,
        current: bool,
        sigma2: float | None,
    ) -> KNearestClusters:
        """The kNC classifier of the training embeddings ``reference`` (:func:`fit_knc` with
        the run's index, ``sigma^2`` and temperature), kept while they are the same array."""
        key = (current, sigma2, id(index), getattr(index, "n_refreshes_", None))
        cached = self._knc
        if cached is not None and cached[0] is reference and cached[1] == key:
            return cached[2]
        classifier = fit_knc(
            reference,
            reference_labels,
            index=index,
            sigma2=sigma2,
            scale=self.config.loss.scale,
            current=current,
            new_index=make_index(self.config),
            neighbours=self.config.eval.neighbours,
        )
        self._knc = (reference, key, classifier)
        return classifier

    def scores(
        self,
        queries: np.ndarray,
        labels: np.ndarray,
        reference: np.ndarray,
        reference_labels: np.ndarray,
        knc,
        *,
        full: bool = False,
    ) -> dict:
        """kNC and soft-kNN errors of ``queries (N, E)`` with ``labels (N,)`` against the
        training embeddings ``reference``; ``full`` adds every other class-score and
        retrieval metric of ``evaluate``; a loss with its own classifier adds its errors.
        ``knc()`` gives the kNC classifier (called on rank 0 only)."""

        def scores() -> dict:  # on rank 0 only, then shared
            metrics = knc_errors(knc(), queries, labels)
            metrics.update(
                evaluate(
                    queries,
                    labels,
                    reference=reference,
                    reference_labels=reference_labels,
                    metrics=None if full else ["knn_error"],
                    k=self.config.eval.knn_k,
                )
            )
            if self.own_classifier is not None:
                metrics.update(classifier_metrics(self.own_classifier, queries, labels))
            return metrics

        return self.dist.broadcast_object(self.dist.on_main(scores))

    def unseen(self, model, dataset) -> dict:
        """Clustering and retrieval among the classes held out of training
        (:data:`magnetdml.evaluation.UNSEEN_METRICS`)."""
        queries = self.embed(model, dataset)
        return self.dist.broadcast_object(
            self.dist.on_main(
                lambda: evaluate(
                    queries, dataset.labels, metrics=UNSEEN_METRICS, seed=self.config.train.seed
                )
            )
        )
