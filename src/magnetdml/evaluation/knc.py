"""k-nearest clusters (kNC): Magnet Loss's classifier over the cluster index (paper §3.3).

:func:`fit_knc` is the one place that decides which centres and which lengthscale a trained
embedding is classified with; training, reloaded runs, searches, the own-loop helper and
``predict`` all call it. :class:`KNearestClusters` is the classifier itself.
"""

from __future__ import annotations

import copy

import numpy as np

from .._validation import as_embedding_matrix, as_label_vector, check_float, check_int
from ._scores import NeighbourVote, class_indices
from .neighbours import DEFAULT_BATCH_SIZE, build_index, iter_neighbours


class KNearestClusters(NeighbourVote):
    """Classify by the ``L`` nearest cluster centres, weighted by the Magnet lengthscale.

        label(r) = argmax_c  sum_{l in L nearest centres, class(l) = c}
                             exp(-||r - mu_l||^2 / (2 sigma^2))

    (paper §3.3) with squared Euclidean distances, ``L = min(neighbours, C)`` for ``C`` centres
    and ``sigma^2`` the running average of the training ``s2`` (the paper uses ``L = 128``);
    with the temperature ``s`` of training, ``sigma^2 / s`` takes its place (the
    ``lengthscale``).
    With one cluster per class and ``L = 1`` it is the nearest class mean classifier. Scores
    are computed in log space, so a query far from every centre still gets finite
    probabilities (the nearest centre's weight is taken as 1 before normalising).

    Fitted attributes: ``centroids_ (C, D)`` float32, ``centroid_labels_ (C,)`` int64,
    ``lengthscale_``, ``classes_`` (sorted labels of the centres, the score
    columns) and ``index_`` (the cluster index the centres came from; ``None`` when fitted
    from arrays).
    """

    def __init__(self, neighbours: int = 128, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.neighbours = check_int("neighbours", neighbours, minimum=1)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)

    def fit(
        self, index=None, lengthscale: float | None = None, *, centroids=None, centroid_labels=None
    ) -> KNearestClusters:
        """Take the centres from a fitted cluster ``index`` (any object with ``centroids_ (C,
        D)`` and ``centroid_labels_ (C,)``) or from the ``centroids`` / ``centroid_labels``
        arrays, and the (squared) ``lengthscale > 0``: ``sigma^2 / s``, the trainer's running
        average of Magnet Loss's batch variance ``s2`` over its temperature
        (:func:`knc_lengthscale`; :func:`fit_knc` picks both as training does)."""
        if index is not None:
            if centroids is not None or centroid_labels is not None:
                raise ValueError("pass either index or centroids/centroid_labels, not both")
            if not (hasattr(index, "centroids_") and hasattr(index, "centroid_labels_")):
                raise TypeError(
                    "index must be a fitted cluster index with centroids_ and "
                    f"centroid_labels_ attributes (call index.fit(...) first); "
                    f"got {type(index).__name__}"
                )
            centroids, centroid_labels = index.centroids_, index.centroid_labels_
        elif centroids is None or centroid_labels is None:
            raise ValueError(
                "fit needs a fitted cluster index, or both centroids (C, D) and "
                "centroid_labels (C,)"
            )
        if lengthscale is None:
            raise ValueError(
                "lengthscale must be given: the kNC lengthscale sigma^2 / s (the "
                "running average of the training s2 over the temperature; or "
                "magnetdml.evaluation.estimate_variance(train_embeddings, "
                "train_labels)); got None"
            )
        self.lengthscale_ = check_float(
            "lengthscale",
            lengthscale,
            strict_minimum=0.0,
            fix="sigma^2 / s is a squared lengthscale",
        )
        self.centroids_ = as_embedding_matrix("centroids", centroids)
        self.centroid_labels_ = as_label_vector(
            "centroid_labels", centroid_labels, self.centroids_.shape[0]
        )
        if self.centroids_.shape[0] == 0:
            raise ValueError("centroids must hold at least one centre; got 0")
        self.index_ = index
        self.classes_ = np.unique(self.centroid_labels_)
        self._item_classes = class_indices(self.centroid_labels_, self.classes_)  # (C,)
        self._index = build_index(self.centroids_)
        return self

    def _neighbours(self, embeddings):
        if not hasattr(self, "centroids_"):
            raise RuntimeError("KNearestClusters is not fitted; call fit(index, lengthscale)")
        queries = as_embedding_matrix("embeddings", embeddings)
        if queries.shape[1] != self.centroids_.shape[1]:
            raise ValueError(
                f"embeddings must have the centres' dimension "
                f"{self.centroids_.shape[1]}; got {queries.shape[1]}"
            )
        k = min(self.neighbours, self.centroids_.shape[0])
        return iter_neighbours(
            queries, k, index=self._index, batch_size=self.batch_size
        ), queries.shape[0]


def cluster_variance(embeddings, index) -> float:
    """The kNC lengthscale of a loss trained without a running ``sigma^2`` (softmax, triplet):

        sigma^2 = sum_n ||r_n - mu(r_n)||^2 / (N - 1)

    over the fitted ``index``'s assignments ``(N,)`` and centres ``(C, E)``; ``embeddings``
    ``(N, E)`` are the ones the index was fitted on. Float64 sums."""
    x = as_embedding_matrix("embeddings", embeddings)
    if not (hasattr(index, "centroids_") and hasattr(index, "assignments_")):
        raise TypeError(
            "index must be a fitted cluster index with centroids_ and assignments_ "
            f"(call index.fit(embeddings, labels) first); got {type(index).__name__}"
        )
    if len(index.assignments_) != len(x) or index.centroids_.shape[1] != x.shape[1]:
        raise ValueError(
            f"embeddings {x.shape} must be the ones the index was fitted on "
            f"({len(index.assignments_)} assignments, centres of dimension "
            f"{index.centroids_.shape[1]}); pass those embeddings"
        )
    residual = x - index.centroids_[index.assignments_]  # (N, E)
    return float((residual.astype(np.float64) ** 2).sum() / max(len(x) - 1, 1))


def knc_lengthscale(sigma2: float, scale: float = 1.0) -> float:
    """The kNC lengthscale consistent with training: ``sigma^2 / s``, with ``sigma^2`` the
    running average of the batch variance ``s2`` (paper §3.3) and ``s`` the loss's inverse
    temperature ``scale`` (``exp(-s d^2 / (2 sigma^2))`` is the training objective's own
    weighting of a cluster at squared distance ``d^2``)."""
    return float(sigma2) / float(scale)


def fit_knc(
    reference=None,
    reference_labels=None,
    *,
    index=None,
    sigma2: float | None = None,
    scale: float = 1.0,
    current: bool = True,
    new_index=None,
    neighbours: int = 128,
) -> KNearestClusters:
    """kNC of a trained embedding, as every part of magnetdml scores it (paper §3.3).

    - A run trained with a cluster ``index`` and a running ``sigma2``: that index's centres
      and the lengthscale ``sigma^2 / scale`` (:func:`knc_lengthscale`). When the index
      clusters older embeddings than ``reference (N, E)`` (``current=False``: between
      refreshes of an every-N or adaptive schedule), a copy of it is refreshed on
      ``reference`` / ``reference_labels (N,)`` first, so kNC uses the current model's
      clusters (the paper's final index) and the given index is left unchanged.
    - A run without (softmax, triplet, ...; ``index`` or ``sigma2`` None): ``new_index`` (an
      unfitted cluster index) is fitted on ``reference`` now, with the lengthscale
      ``sum_n ||r_n - mu(r_n)||^2 / (N - 1)`` (:func:`cluster_variance`).

    ``L = min(neighbours, C)`` nearest centres vote. Returns the fitted classifier."""
    if index is not None and sigma2 is not None:
        if not current:
            index = copy.deepcopy(index).refresh(reference, reference_labels)
        lengthscale = knc_lengthscale(sigma2, scale)
    else:
        if new_index is None or reference is None or reference_labels is None:
            raise ValueError(
                "fit_knc needs a fitted index and sigma2, or new_index (an "
                "unfitted cluster index) with reference and reference_labels to "
                "fit one on"
            )
        index = new_index.fit(reference, reference_labels)
        lengthscale = cluster_variance(reference, index)
    return KNearestClusters(neighbours=neighbours).fit(index, lengthscale)


def knc_errors(
    classifier: KNearestClusters, queries, labels, metrics=("knc_error",)
) -> dict[str, float]:
    """``knc_error`` (= ``knc_error_at_1``) and ``knc_error_at_5`` of a fitted classifier:
    the share of ``queries (N, E)`` whose label ``(N,)`` is not among the 1 / 5 best-scored
    classes (ties to the lower class; a label without a centre is always an error)."""
    top = {"knc_error": 1, "knc_error_at_1": 1, "knc_error_at_5": 5}
    ranks = classifier.true_class_ranks(queries, labels)  # (N,)
    return {m: float(np.mean(ranks >= top[m])) for m in metrics}
