"""k-means with k-means++ seeding: the paper's initialisation (§3.2) with faiss's fast Lloyd steps.

``faiss.Kmeans`` seeds at random, which on well separated data often merges two true clusters
and splits another (DESIGN.md §4). We seed with scikit-learn's ``kmeans_plusplus`` and hand the
seeds to faiss as ``init_centroids``; a warm start passes the previous centres instead.
"""

from __future__ import annotations

from typing import NamedTuple

import faiss
import numpy as np
from sklearn.cluster import kmeans_plusplus


class KMeansResult(NamedTuple):
    """``centroids (k, D)`` float32, ``assignments (N,)`` int64 in ``[0, k)``, ``inertia``
    (the sum of squared distances of the points to their centres)."""

    centroids: np.ndarray
    assignments: np.ndarray
    inertia: float


def kmeans(points: np.ndarray, k: int, *, seed: int = 0, max_iter: int = 20,
           init: np.ndarray | None = None) -> KMeansResult:
    """Cluster ``points (N, D)`` into ``min(k, N)`` clusters.

    Minimises ``sum_n ||x_n - c_{a(n)}||^2`` by Lloyd iterations from k-means++ seeds (or from
    ``init (k, D)``, a warm start). Empty clusters are re-seeded by faiss (it splits the
    largest). Deterministic for a given ``seed``.
    """
    points = np.ascontiguousarray(points, dtype=np.float32)
    n, dim = points.shape
    k = min(int(k), n)
    if k <= 1:
        centroid = points.mean(axis=0, keepdims=True)
        inertia = float(((points - centroid) ** 2).sum())
        return KMeansResult(centroid, np.zeros(n, dtype=np.int64), inertia)
    if init is None:
        init, _ = kmeans_plusplus(points, k, random_state=np.random.RandomState(seed))
    init = np.ascontiguousarray(init, dtype=np.float32)
    if init.shape != (k, dim):
        raise ValueError(f"init must have shape ({k}, {dim}) for a warm start; got {init.shape}")
    if max_iter == 0:
        centroids = init
    else:
        # min_points_per_centroid=1 silences faiss's "too few points" warning for small
        # classes; max_points_per_centroid=n disables its silent subsampling.
        model = faiss.Kmeans(dim, k, niter=max_iter, seed=seed, verbose=False,
                             min_points_per_centroid=1, max_points_per_centroid=n)
        model.train(points, init_centroids=init)
        centroids = model.centroids
    index = faiss.IndexFlatL2(dim)
    index.add(centroids)
    distances, nearest = index.search(points, 1)
    return KMeansResult(np.ascontiguousarray(centroids), nearest[:, 0].astype(np.int64),
                        float(distances.sum()))
