"""Per-query retrieval scores from a chunk of ranked neighbours.

Definitions follow Musgrave, Belongie & Lim, *A Metric Learning Reality Check* (ECCV 2020) and
Song et al., *Deep Metric Learning via Lifted Structured Feature Embedding* (CVPR 2016). For a
query ``q`` with ranked neighbours ``1, 2, ...`` (nearest first, ``q`` itself excluded when the
query set is its own reference), let ``rel(i) = 1`` when neighbour ``i`` has ``q``'s label and
``R`` the number of references with ``q``'s label (capped at ``max_r``):

- ``precision_at_1 = rel(1)``; ``recall_at_k = 1 if any rel(i) for i <= k`` (so recall@1 equals
  precision@1);
- ``r_precision = (1/R) * sum_{i <= R} rel(i)``;
- ``map_at_r = (1/R) * sum_{i <= R} rel(i) * P(i)``, ``P(i) = (1/i) * sum_{j <= i} rel(j)``.

All functions take ``matches (B, k)`` bool (``rel`` for the first ``k`` neighbours) and return
one float64 score per query; :mod:`.api` averages them over the queries that have ``R >= 1``.
"""

from __future__ import annotations

import numpy as np


def precision_at_1(matches: np.ndarray) -> np.ndarray:
    """``(B,)``: 1.0 where the nearest neighbour shares the query's label."""
    return matches[:, 0].astype(np.float64)


def recall_at(matches: np.ndarray, k: int) -> np.ndarray:
    """``(B,)``: 1.0 where any of the ``k`` nearest neighbours shares the query's label
    (Recall@K of Song et al. 2016). ``k`` larger than the list uses the whole list."""
    return matches[:, :k].any(axis=1).astype(np.float64)


def _within_r(matches: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``rel(i) * [i <= R]`` as ``(B, k)`` bool; ``r (B,)`` must be <= ``k``."""
    positions = np.arange(1, matches.shape[1] + 1)[None, :]  # (1, k)
    return matches & (positions <= r[:, None])


def r_precision(matches: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``(B,)``: fraction of the first ``R`` neighbours that share the label (``r (B,)`` >= 1,
    at most the number of columns of ``matches``)."""
    return _within_r(matches, r).sum(axis=1) / r


def map_at_r(matches: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``(B,)``: mean average precision at ``R`` (Musgrave et al. 2020, eq. in §3.2)."""
    hits = _within_r(matches, r)  # (B, k)
    precision = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)  # (B, k) P(i)
    return (precision * hits).sum(axis=1) / r
