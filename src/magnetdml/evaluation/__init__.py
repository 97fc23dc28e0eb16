"""Evaluation (layer 3): k-nearest clusters, soft kNN, retrieval and clustering metrics.

Pure functions and small estimators over embeddings and labels, chunked so memory stays bounded
at any ``N`` (no ``N x N`` matrix is ever built). Entry point: :func:`evaluate`.
"""

from .api import (
    CLASSIFICATION_METRICS,
    CLUSTERING_METRICS,
    KNC_METRICS,
    METRICS,
    RETRIEVAL_METRICS,
    UNSEEN_METRICS,
    evaluate,
)
from .clustering import clustering_scores, pairwise_f1
from .knc import KNearestClusters, cluster_variance, fit_knc, knc_errors, knc_lengthscale
from .knn import SoftKNN, estimate_variance
from .neighbours import iter_neighbours, nearest_neighbours

__all__ = [
    "CLASSIFICATION_METRICS",
    "CLUSTERING_METRICS",
    "KNC_METRICS",
    "METRICS",
    "RETRIEVAL_METRICS",
    "UNSEEN_METRICS",
    "KNearestClusters",
    "SoftKNN",
    "cluster_variance",
    "clustering_scores",
    "estimate_variance",
    "evaluate",
    "fit_knc",
    "iter_neighbours",
    "knc_errors",
    "knc_lengthscale",
    "nearest_neighbours",
    "pairwise_f1",
]
