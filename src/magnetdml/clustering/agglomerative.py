"""Adaptive per-class clusters by Ward agglomerative clustering (student project 000).

k-means needs the number of clusters per class up front; the paper tuned one ``K`` for all
classes and said adapting it "can enhance performance" (§5). Cutting a Ward tree at a distance
threshold instead lets each class get as many clusters as its spread supports, and lets the
count change during training.

Units of the threshold. The Ward merge height of clusters ``a`` and ``b`` is
``h = sqrt(2 n_a n_b / (n_a + n_b)) * ||c_a - c_b||`` (scipy and scikit-learn agree), i.e.
``h^2 / 2`` is the rise in the within-cluster sum of squares. We cut at

    h_cut = distance_threshold * s * sqrt(n)

where ``n`` is the number of points clustered for that class and ``s^2`` the pooled intra-class
spread: the mean over all training examples of ``||r_n - mean of class C(n)||^2``. So a merge is
refused when it would raise the class's mean squared distance to its cluster centres by more
than ``distance_threshold^2 * s^2 / 2``: multiplying every embedding by 100 scales ``h`` and
``s`` alike and leaves the clusters unchanged, and subsampling a big class does not change the
cut (the ``sqrt(n)`` factor).

Cost: Ward is O(n^2) in memory and time, so a class larger than ``max_points`` is clustered on a
seeded subsample and its other members go to their nearest centre.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

from .._faiss import faiss

# Classes above this size are clustered on a subsample: Ward on 2,000 points takes ~0.2 s.
MAX_POINTS = 2000


def pooled_spread(points: np.ndarray, labels: np.ndarray) -> float:
    """``s``: the root of the mean squared distance of an example to its class mean."""
    _, inverse = np.unique(labels, return_inverse=True)
    counts = np.bincount(inverse).astype(np.float64)  # (n_classes,)
    sums = np.zeros((counts.size, points.shape[1]))
    np.add.at(sums, inverse, points)
    means = sums / counts[:, None]  # (n_classes, D)
    return float(np.sqrt(((points - means[inverse]) ** 2).sum(axis=1).mean()))


def ward_clusters(
    points: np.ndarray,
    *,
    distance_threshold: float,
    spread: float,
    max_clusters: int | None,
    rng: np.random.Generator,
    max_points: int = MAX_POINTS,
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster one class's ``points (n, D)``; return ``centroids (k, D)`` float32 and
    ``assignments (n,)`` int64 in ``[0, k)``, every cluster non-empty.

    ``spread`` is ``s`` from ``pooled_spread``; ``max_clusters`` caps ``k`` by cutting the same
    tree into that many clusters instead.
    """
    points = np.ascontiguousarray(points, dtype=np.float32)
    n, dim = points.shape
    if n == 1:
        return points.copy(), np.zeros(1, dtype=np.int64)
    fit_rows = np.sort(rng.choice(n, max_points, replace=False)) if n > max_points else None
    fit = points if fit_rows is None else points[fit_rows]  # (n_fit, D)
    tree = linkage(fit.astype(np.float64), method="ward")
    cut = distance_threshold * spread * np.sqrt(fit.shape[0])
    labels = fcluster(tree, t=cut, criterion="distance")
    if max_clusters is not None and labels.max() > max_clusters:
        labels = fcluster(tree, t=max_clusters, criterion="maxclust")
    _, labels = np.unique(labels, return_inverse=True)  # fcluster ids are 1-based, maybe gappy
    k = int(labels.max()) + 1
    if fit_rows is None:
        assignments = labels.astype(np.int64)
    else:
        centres = _means(fit, labels, k)
        search = faiss.IndexFlatL2(dim)
        search.add(centres)
        _, nearest = search.search(points, 1)
        assignments = nearest[:, 0].astype(np.int64)
        assignments[fit_rows] = labels  # the subsample keeps its tree clusters
    return _means(points, assignments, k), assignments


def _means(points: np.ndarray, assignments: np.ndarray, k: int) -> np.ndarray:
    sums = np.zeros((k, points.shape[1]))
    np.add.at(sums, assignments, points)
    counts = np.bincount(assignments, minlength=k)[:, None]  # every cluster holds a point
    return np.ascontiguousarray(sums / counts, dtype=np.float32)
