"""A Magnet batch's cluster structure, and the batches the cluster terms refuse (DESIGN §1).

Shared by both forms of the cluster terms (``magnet.autograd_cluster_terms`` and
``cluster_terms_cpu.CPUClusterTerms``), so they take the same batches and say the same thing.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class BatchClusters(NamedTuple):
    """A batch's cluster structure (numpy, checked by :func:`batch_clusters`): ``member_of
    (B,)`` each example's batch cluster ``0..M-1``, ``counts (M,)`` the examples per cluster,
    ``same_class (B, M)`` whether cluster ``m`` holds example ``n``'s class."""

    member_of: np.ndarray
    counts: np.ndarray
    same_class: np.ndarray


def batch_clusters(
    labels: torch.Tensor, clusters: torch.Tensor, *, estimate_variance: bool = True
) -> BatchClusters:
    """The :class:`BatchClusters` of ``labels (B,)`` and ``clusters (B,)``, with the
    degenerate batches of DESIGN §1 refused: a cluster of one example (when the variance is
    estimated), a cluster of several classes, a batch of one class."""
    label, cluster = labels.detach().cpu().numpy(), clusters.detach().cpu().numpy()
    if label.size == 0:
        raise ValueError("the batch is empty: Magnet's terms need M clusters x D examples")
    cluster_ids = np.unique(cluster)  # (M,) sorted
    member_of = np.searchsorted(cluster_ids, cluster)  # (B,)
    counts = np.bincount(member_of, minlength=cluster_ids.size)  # (M,)
    if estimate_variance and counts.min() < 2:
        small = cluster_ids[counts < 2].tolist()
        raise ValueError(
            "every cluster needs >= 2 examples in the batch (the variance "
            f"needs two points per cluster); clusters {small[:5]} have 1. "
            "Use examples_per_cluster >= 2"
        )
    cluster_label = np.empty(cluster_ids.size, dtype=label.dtype)
    cluster_label[member_of] = label  # (M,)
    mixed = cluster_label[member_of] != label
    if mixed.any():
        bad = np.unique(member_of[mixed])
        raise ValueError(
            "each cluster id must belong to exactly one label; clusters "
            f"{cluster_ids[bad].tolist()[:5]} hold examples of several labels"
        )
    if (cluster_label == cluster_label[0]).all():
        raise ValueError(
            "the batch must hold clusters of at least two classes (the "
            "denominator runs over clusters of other classes); got only class "
            f"{int(cluster_label[0])}"
        )
    return BatchClusters(member_of, counts, label[:, None] == cluster_label[None, :])


def check_variance(s2: float) -> None:
    """Refuse a batch variance estimate ``s2`` that is not > 0 (a collapsed embedding)."""
    if not s2 > 0:
        raise ValueError(
            "the batch variance s2 is 0: every embedding sits on its "
            "cluster mean (the embedding collapsed; lower the learning "
            "rate or check that the inputs differ)"
        )


def check_finite(finite: bool) -> None:
    """Refuse embeddings with a NaN or an infinity (``finite``: whether they have none)."""
    if not finite:
        raise ValueError(
            "embeddings must be finite; got NaN or inf (the network diverged: "
            "lower the learning rate, or check the input data)"
        )
