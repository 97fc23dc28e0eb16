"""Class scores from neighbours, shared by kNC (neighbours = cluster centres) and soft kNN.

Paper §3.3: the score of class ``c`` for a query ``r`` is

    score_c(r) = sum_{l in L nearest, class(l) = c} exp(-||r - x_l||^2 / (2 sigma^2))

normalised over classes. We compute it in log space: the exponent of the nearest neighbour is
subtracted from every exponent before ``exp`` (a softmax shift), so the nearest neighbour's
weight is exactly 1, the normaliser is >= 1, and a query far from every neighbour (all raw
weights underflowing to 0) still gets finite probabilities instead of 0/0. ``sigma^2 = None``
gives every neighbour weight 1: plain majority-vote kNN.

Ranks break ties towards the lower class index, like ``numpy.argmax`` on the score vector.
"""

from __future__ import annotations

import numpy as np

from .._validation import as_label_vector

# Bound on the (rows x classes) float64 score block built at once: 2**22 doubles = 32 MiB.
_MAX_SCORE_CELLS = 1 << 22

#: The rank of a true class the classifier does not know: an error at every k.
UNRANKED = np.iinfo(np.int64).max


def class_probabilities(
    sq_distances: np.ndarray, neighbour_classes: np.ndarray, variance: float | None, n_classes: int
) -> np.ndarray:
    """``(B, n_classes)`` float64 probabilities from ``sq_distances (B, L)`` and the class
    indices ``neighbour_classes (B, L)`` in ``[0, n_classes)`` of the ``L`` neighbours."""
    b, num = sq_distances.shape
    if variance is None:
        weights = np.ones((b, num), dtype=np.float64)  # (B, L)
    else:
        logits = -sq_distances.astype(np.float64) / (2.0 * variance)  # (B, L)
        # Softmax shift: the largest weight becomes exp(0) = 1, so no row can sum to 0.
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))  # (B, L)
    flat = (np.arange(b, dtype=np.int64)[:, None] * n_classes + neighbour_classes).ravel()
    sums = np.bincount(flat, weights=weights.ravel(), minlength=b * n_classes)
    sums = sums.reshape(b, n_classes)  # (B, C)
    return sums / sums.sum(axis=1, keepdims=True)


def true_class_ranks(scores: np.ndarray, true_classes: np.ndarray) -> np.ndarray:
    """0-based rank of each row's true class in ``scores (B, C)`` (0 = predicted class).

    ``true_classes (B,)`` holds class indices, or ``-1`` for a class the classifier does not
    know (absent from the reference / centres): such a query is wrong at every ``k``, so its
    rank is :data:`UNRANKED` (``C`` would count as found at any ``k > C``). Ties go to the
    lower class index.
    """
    b, n_classes = scores.shape
    known = true_classes >= 0
    safe = np.where(known, true_classes, 0)
    own = scores[np.arange(b), safe][:, None]  # (B, 1)
    columns = np.arange(n_classes)[None, :]
    better = (scores > own) | ((scores == own) & (columns < safe[:, None]))  # (B, C)
    return np.where(known, better.sum(axis=1), UNRANKED)


def neighbour_class_ranks(
    sq_distances: np.ndarray,
    neighbour_classes: np.ndarray,
    true_classes: np.ndarray,
    variance: float | None,
    n_classes: int,
) -> np.ndarray:
    """Ranks of the true classes (see :func:`true_class_ranks`), computed in row blocks so the
    ``(rows, n_classes)`` score block stays under 32 MiB even with very many classes."""
    rows = max(1, _MAX_SCORE_CELLS // max(n_classes, 1))
    out = np.empty(sq_distances.shape[0], dtype=np.int64)
    for start in range(0, sq_distances.shape[0], rows):
        block = slice(start, start + rows)
        scores = class_probabilities(
            sq_distances[block], neighbour_classes[block], variance, n_classes
        )
        out[block] = true_class_ranks(scores, true_classes[block])
    return out


def class_indices(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Map ``labels`` to their positions in the sorted ``classes``; ``-1`` where absent."""
    positions = np.searchsorted(classes, labels)
    positions = np.minimum(positions, len(classes) - 1)
    return np.where(classes[positions] == labels, positions, -1).astype(np.int64)


class NeighbourVote:
    """What kNC and soft kNN share once their neighbour search is set up: class scores,
    predictions and true-class ranks, streamed in query chunks.

    Subclasses provide ``classes_``, ``lengthscale_`` (``None``: majority vote),
    ``_item_classes`` (the class index of
    every indexed item: a centre for kNC, a reference example for kNN) and
    ``_neighbours(embeddings) -> (chunks of (start, sq_distances, indices), n_queries)``.
    """

    classes_: np.ndarray
    lengthscale_: float | None
    _item_classes: np.ndarray

    def _neighbours(self, embeddings):
        raise NotImplementedError

    def predict_scores(self, embeddings) -> np.ndarray:
        """``(N, n_classes)`` float64 class probabilities (rows sum to 1), columns aligned
        with ``classes_``."""
        chunks, n = self._neighbours(embeddings)
        out = np.empty((n, len(self.classes_)))
        for start, distances, indices in chunks:
            out[start : start + len(indices)] = class_probabilities(
                distances, self._item_classes[indices], self.lengthscale_, len(self.classes_)
            )
        return out

    def predict(self, embeddings) -> np.ndarray:
        """``(N,)`` predicted labels (argmax of the scores; ties to the lower class)."""
        scores = self.predict_scores(embeddings)  # first: raises cleanly when not fitted
        return self.classes_[scores.argmax(axis=1)]

    def true_class_ranks(self, embeddings, labels) -> np.ndarray:
        """0-based rank of each query's true label among ``classes_`` (0 = correct;
        :data:`UNRANKED` for a label the classifier has never seen). Streams in chunks, never
        holding ``(N, n_classes)``: ``error@k = mean(rank >= k)``."""
        chunks, n = self._neighbours(embeddings)
        truth = class_indices(as_label_vector("labels", labels, n), self.classes_)
        ranks = np.empty(n, dtype=np.int64)
        for start, distances, indices in chunks:
            part = slice(start, start + len(indices))
            ranks[part] = neighbour_class_ranks(
                distances,
                self._item_classes[indices],
                truth[part],
                self.lengthscale_,
                len(self.classes_),
            )
        return ranks
