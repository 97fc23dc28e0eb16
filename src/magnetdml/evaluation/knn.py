"""Soft kNN (paper §4: how triplet and softmax embeddings are scored) and majority-vote kNN."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from .._validation import as_embedding_matrix, as_label_vector, check_choice, check_float, check_int
from ._scores import NeighbourVote, class_indices
from .neighbours import DEFAULT_BATCH_SIZE, build_index, iter_neighbours

_ROWS_PER_PASS = 65536  # rows converted to float64 at a time by estimate_variance


def estimate_variance(embeddings, labels, *, batch_size: int = _ROWS_PER_PASS) -> float:
    """Intra-class variance ``sigma^2`` of a labelled set, the default lengthscale of soft kNN.

        sigma^2 = sum_n ||r_n - mu_{C(n)}||^2 / (N - 1),   mu_c = mean of class c

    This is Magnet Loss's ``s2`` (paper eq. 4) with one cluster per class, so a soft kNN scored
    with it and a kNC scored with the training ``s2`` use the same kind of lengthscale. It
    scales with the square of the embedding, so ``exp(-d^2 / (2 sigma^2))`` is invariant to the
    embedding's global scale. If every class is a single point (or duplicates) the intra-class
    variance is 0 and the total variance about the global mean is used instead; if every point
    is identical, 1.0 (any value then gives the same scores). Computed in float64, in row
    chunks of ``batch_size`` (memory independent of ``N``).
    """
    x = as_embedding_matrix("embeddings", embeddings)
    y = as_label_vector("labels", labels, x.shape[0])
    if x.shape[0] < 2:
        raise ValueError(f"embeddings must hold >= 2 rows to estimate a variance; got {x.shape[0]}")
    classes, inverse = np.unique(y, return_inverse=True)
    n, n_classes = x.shape[0], len(classes)
    sums = np.zeros((n_classes, x.shape[1]))  # (C, D) float64
    for start in range(0, n, batch_size):
        part = slice(start, start + batch_size)
        rows = inverse[part]
        onehot = sparse.csr_matrix(
            (np.ones(len(rows)), (rows, np.arange(len(rows)))), shape=(n_classes, len(rows))
        )  # (C, B)
        sums += onehot @ x[part].astype(np.float64)
    means = sums / np.bincount(inverse, minlength=n_classes)[:, None]  # (C, D)
    within = total = 0.0
    grand = x.mean(axis=0, dtype=np.float64)  # (D,)
    for start in range(0, n, batch_size):
        part = x[start : start + batch_size].astype(np.float64)  # (B, D)
        within += float(((part - means[inverse[start : start + batch_size]]) ** 2).sum())
        total += float(((part - grand) ** 2).sum())
    for value in (within, total):
        if value > 0.0:
            return value / (n - 1)
    return 1.0


class SoftKNN(NeighbourVote):
    """Soft k-nearest-neighbour classifier over a labelled reference set (paper §3.3, §4).

        score_c(r) = sum_{l in L nearest references, C(l) = c} exp(-||r - x_l||^2 / (2 sigma^2))

    with squared Euclidean distances, ``L = min(neighbours, N_ref)`` and the label the argmax
    over classes. ``vote="majority"`` gives every neighbour weight 1 (plain kNN, ties to the
    lower class). ``variance=None`` estimates ``sigma^2`` at ``fit`` as the reference set's
    intra-class variance (:func:`estimate_variance`): scale invariant, like the kNC
    lengthscale. The fitted variance is ``variance_``; the sorted classes ``classes_``.

    ``predict(None)`` / ``predict_scores(None)`` classify the reference set itself, each
    example left out of its own neighbours (as scikit-learn's ``kneighbors(X=None)``).
    """

    def __init__(
        self,
        neighbours: int = 128,
        variance: float | None = None,
        vote: str = "soft",
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.neighbours = check_int("neighbours", neighbours, minimum=1)
        self.variance = (
            None
            if variance is None
            else check_float(
                "variance",
                variance,
                strict_minimum=0.0,
                fix="sigma^2 is a squared lengthscale; pass None to estimate it",
            )
        )
        self.vote = check_choice("vote", vote, ("soft", "majority"))
        self.batch_size = check_int("batch_size", batch_size, minimum=1)

    def fit(self, reference, reference_labels) -> SoftKNN:
        """Store ``reference (N_ref, D)`` and ``reference_labels (N_ref,)``; fit ``variance_``."""
        self.reference_ = as_embedding_matrix("reference", reference)
        self.reference_labels_ = as_label_vector(
            "reference_labels", reference_labels, self.reference_.shape[0]
        )
        if self.reference_.shape[0] == 0:
            raise ValueError("reference must hold at least one example; got 0 rows")
        self.classes_ = np.unique(self.reference_labels_)
        self._item_classes = class_indices(self.reference_labels_, self.classes_)
        if self.vote == "majority":
            self.variance_ = None
        elif self.variance is not None:
            self.variance_ = self.variance
        elif self.reference_.shape[0] == 1:
            self.variance_ = 1.0  # one reference: every query gets it with probability 1
        else:
            self.variance_ = estimate_variance(self.reference_, self.reference_labels_)
        self._index = build_index(self.reference_)
        return self

    @property
    def lengthscale_(self) -> float | None:
        """The kernel's squared lengthscale: ``variance_`` (soft kNN has no temperature)."""
        return self.variance_

    def _neighbours(self, embeddings):
        if not hasattr(self, "reference_"):
            raise RuntimeError("SoftKNN is not fitted; call fit(reference, reference_labels)")
        exclude_self = embeddings is None
        queries = self.reference_ if exclude_self else as_embedding_matrix("embeddings", embeddings)
        if queries.shape[1] != self.reference_.shape[1]:
            raise ValueError(
                f"embeddings must have the reference's dimension "
                f"{self.reference_.shape[1]}; got {queries.shape[1]}"
            )
        available = self.reference_.shape[0] - int(exclude_self)
        if available < 1:
            raise ValueError("leave-one-out prediction needs >= 2 reference examples; got 1")
        k = min(self.neighbours, available)
        return iter_neighbours(
            queries, k, index=self._index, exclude_self=exclude_self, batch_size=self.batch_size
        ), queries.shape[0]

    def predict_scores(self, embeddings=None) -> np.ndarray:
        """``(N, n_classes)`` class probabilities; ``None``: the reference set itself, each
        example left out of its own neighbours."""
        return super().predict_scores(embeddings)

    def predict(self, embeddings=None) -> np.ndarray:
        """``(N,)`` predicted labels; ``None``: leave-one-out over the reference set."""
        return super().predict(embeddings)
