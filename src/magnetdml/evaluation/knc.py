"""k-nearest clusters (kNC): Magnet Loss's classifier over the cluster index (paper §3.3)."""

from __future__ import annotations

import numpy as np

from .._validation import as_embedding_matrix, as_label_vector, check_float, check_int
from ._scores import NeighbourVote, class_indices
from .neighbours import DEFAULT_BATCH_SIZE, build_index, iter_neighbours


class KNearestClusters(NeighbourVote):
    """Classify by the ``L`` nearest cluster centres, weighted by the Magnet lengthscale.

        label(r) = argmax_c  sum_{l in L nearest centres, class(l) = c}
                             exp(-||r - mu_l||^2 / (2 sigma^2))

    (paper §3.3) with squared Euclidean distances, ``L = min(neighbours, C)`` for ``C`` centres
    and ``sigma^2`` the running average of the training ``s2`` (the paper uses ``L = 128``).
    With one cluster per class and ``L = 1`` it is the nearest class mean classifier. Scores
    are computed in log space, so a query far from every centre still gets finite
    probabilities (the nearest centre's weight is taken as 1 before normalising).

    Fitted attributes: ``centroids_ (C, D)`` float32, ``centroid_labels_ (C,)`` int64,
    ``variance_`` and ``classes_`` (sorted labels of the centres, the score columns).
    """

    def __init__(self, neighbours: int = 128, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.neighbours = check_int("neighbours", neighbours, minimum=1)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)

    def fit(self, index=None, variance: float | None = None, *, centroids=None,
            centroid_labels=None) -> KNearestClusters:
        """Take the centres from a fitted cluster ``index`` (any object with ``centroids_ (C,
        D)`` and ``centroid_labels_ (C,)``) or from the ``centroids`` / ``centroid_labels``
        arrays, and the lengthscale ``variance`` (``sigma^2 > 0``, e.g. the trainer's running
        average of Magnet Loss's batch variance ``s2``)."""
        if index is not None:
            if centroids is not None or centroid_labels is not None:
                raise ValueError("pass either index or centroids/centroid_labels, not both")
            if not (hasattr(index, "centroids_") and hasattr(index, "centroid_labels_")):
                raise TypeError("index must be a fitted cluster index with centroids_ and "
                                f"centroid_labels_ attributes (call index.fit(...) first); "
                                f"got {type(index).__name__}")
            centroids, centroid_labels = index.centroids_, index.centroid_labels_
        elif centroids is None or centroid_labels is None:
            raise ValueError("fit needs a fitted cluster index, or both centroids (C, D) and "
                             "centroid_labels (C,)")
        if variance is None:
            raise ValueError("variance must be given: the kNC lengthscale sigma^2 (the running "
                             "average of the training s2; or magnetdml.evaluation."
                             "estimate_variance(train_embeddings, train_labels)); got None")
        self.variance_ = check_float("variance", variance, strict_minimum=0.0,
                                     fix="sigma^2 is a squared lengthscale")
        self.centroids_ = as_embedding_matrix("centroids", centroids)
        self.centroid_labels_ = as_label_vector("centroid_labels", centroid_labels,
                                                self.centroids_.shape[0])
        if self.centroids_.shape[0] == 0:
            raise ValueError("centroids must hold at least one centre; got 0")
        self.classes_ = np.unique(self.centroid_labels_)
        self._item_classes = class_indices(self.centroid_labels_, self.classes_)  # (C,)
        self._index = build_index(self.centroids_)
        return self

    def _neighbours(self, embeddings):
        if not hasattr(self, "centroids_"):
            raise RuntimeError("KNearestClusters is not fitted; call fit(index, variance)")
        queries = as_embedding_matrix("embeddings", embeddings)
        if queries.shape[1] != self.centroids_.shape[1]:
            raise ValueError(f"embeddings must have the centres' dimension "
                             f"{self.centroids_.shape[1]}; got {queries.shape[1]}")
        k = min(self.neighbours, self.centroids_.shape[0])
        return iter_neighbours(queries, k, index=self._index,
                               batch_size=self.batch_size), queries.shape[0]


def cluster_variance(embeddings, index) -> float:
    """The kNC lengthscale of a loss trained without a running ``sigma^2`` (softmax, triplet):

        sigma^2 = sum_n ||r_n - mu(r_n)||^2 / (N - 1)

    over the fitted ``index``'s assignments ``(N,)`` and centres ``(C, E)``; ``embeddings``
    ``(N, E)`` are the ones the index was fitted on. Float64 sums."""
    x = as_embedding_matrix("embeddings", embeddings)
    if not (hasattr(index, "centroids_") and hasattr(index, "assignments_")):
        raise TypeError("index must be a fitted cluster index with centroids_ and assignments_ "
                        f"(call index.fit(embeddings, labels) first); got {type(index).__name__}")
    if len(index.assignments_) != len(x) or index.centroids_.shape[1] != x.shape[1]:
        raise ValueError(f"embeddings {x.shape} must be the ones the index was fitted on "
                         f"({len(index.assignments_)} assignments, centres of dimension "
                         f"{index.centroids_.shape[1]}); pass those embeddings")
    residual = x - index.centroids_[index.assignments_]                        # (N, E)
    return float((residual.astype(np.float64) ** 2).sum() / max(len(x) - 1, 1))
