"""Clustering quality of an embedding: k-means with k = number of classes, scored against labels.

Protocol of Song et al. (CVPR 2016) and of seed project 003: cluster the embeddings with
k-means (k-means++ seeding, as the paper asks, via :func:`magnetdml.clustering.kmeans.kmeans`)
into as many clusters as there are classes, then compare the cluster assignment with the labels:

- ``nmi``: normalised mutual information ``I(Y; K) / mean(H(Y), H(K))`` (arithmetic mean, the
  scikit-learn default, as pytorch-metric-learning);
- ``ami``: mutual information adjusted for chance; scikit-learn's definition, with its
  expected-MI term summed per distinct pair of class and cluster sizes (exact, and ~300x
  faster at 1,000 classes; see :mod:`.mutual_information`);
- ``ari``: adjusted Rand index (scikit-learn);
- ``f1``: pairwise F1 of Song et al. 2016. Over unordered pairs of examples, a pair is a true
  positive when it shares both a cluster and a class, ``precision = TP / (pairs in a common
  cluster)``, ``recall = TP / (pairs in a common class)``, ``F1 = 2PR / (P + R)``.

Every score is computed from the (sparse) class x cluster contingency table, never from the
``O(N^2)`` pairs.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from ..clustering.kmeans import kmeans
from .mutual_information import adjusted_mutual_info

CLUSTERING_METRICS = ("nmi", "ami", "ari", "f1")
# k-means++ seeds from at most this many points per centre (the Lloyd steps use every point).
# benchmarks/kmeans_seeding.py: 64 scores the same NMI / AMI as seeding on every point (100k
# points in 1,000 classes; MNIST pixels) and seeds 1M points in 1,000 classes 4x sooner than
# the index's 256; below 32 quality drops.
SEED_SAMPLE = 64


def _pairs(counts: np.ndarray) -> float:
    counts = np.asarray(counts, dtype=np.float64)
    return float((counts * (counts - 1.0) / 2.0).sum())


def pairwise_f1(labels_true, labels_pred) -> float:
    """Pairwise clustering F1 (Song et al. 2016) from the contingency table, O(N) memory.

    Returns 0.0 when there is no true-positive pair (including the degenerate case where no
    two examples share a cluster or a class), so the score is always defined.
    """
    table = contingency_matrix(labels_true, labels_pred, sparse=True)  # (classes, clusters)
    together = _pairs(table.data)  # TP
    same_cluster = _pairs(np.asarray(table.sum(axis=0)).ravel())  # TP + FP
    same_class = _pairs(np.asarray(table.sum(axis=1)).ravel())  # TP + FN
    if together == 0.0:
        return 0.0
    precision, recall = together / same_cluster, together / same_class
    return 2.0 * precision * recall / (precision + recall)


def cluster_assignments(embeddings: np.ndarray, n_clusters: int, *, seed: int = 0) -> np.ndarray:
    """k-means++-seeded k-means (faiss Lloyd steps) of ``embeddings (N, D)``: ``(N,)`` ids."""
    return kmeans(embeddings, n_clusters, seed=seed, seed_sample=SEED_SAMPLE).assignments


def clustering_scores(
    embeddings: np.ndarray, labels: np.ndarray, metrics=CLUSTERING_METRICS, *, seed: int = 0
) -> dict[str, float]:
    """Cluster ``embeddings (N, D)`` float32 into ``len(unique(labels))`` clusters and score
    the assignment against ``labels (N,)`` with the requested ``metrics`` (a subset of
    ``nmi``, ``ami``, ``ari``, ``f1``). Inputs are validated by the caller."""
    assignments = cluster_assignments(embeddings, len(np.unique(labels)), seed=seed)
    scorers = {
        "nmi": normalized_mutual_info_score,
        "ami": adjusted_mutual_info,
        "ari": adjusted_rand_score,
        "f1": pairwise_f1,
    }
    return {name: float(scorers[name](labels, assignments)) for name in metrics}
