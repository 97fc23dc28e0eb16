"""Pure measurements of the paper's representation experiments (§4.2 and §4.3).

* :func:`fine_label_errors` -- hierarchy recovery (§4.3, Fig. 4f): a model trained on coarse
  labels (random pairs of classes collapsed into one) is scored on the *fine* labels it never
  saw, with soft kNN over the training embeddings and, for Magnet, with kNC over its own cluster
  index once each cluster is named after the majority fine label of its members.
* :func:`attribute_concentration` -- attribute concentration (§4.2, Fig. 6d): the mean fraction
  of each example's ``k`` nearest neighbours that share an attribute training never used.

Both stream the neighbour search in chunks (faiss, exact, squared Euclidean), so no ``N x N``
matrix is built.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .._validation import as_embedding_matrix, as_label_vector, check_float, check_int
from ..evaluation import KNearestClusters, evaluate
from ..evaluation.neighbours import iter_neighbours

# Bound on (queries x neighbours) cells searched at once (~100 MiB of results and masks).
_MAX_CELLS = 1 << 23


def majority_labels(assignments, labels, n_clusters: int) -> np.ndarray:
    """``(n_clusters,)`` the most frequent label among each cluster's members (ties to the
    smaller label; ``-1`` for a cluster without members). ``assignments (N,)`` are cluster
    rows ``0..n_clusters-1``, ``labels (N,)`` any integers."""
    values, inverse = np.unique(labels, return_inverse=True)
    counts = np.zeros((n_clusters, max(len(values), 1)), dtype=np.int64)  # (C, F)
    np.add.at(counts, (assignments, inverse), 1)
    majority = values[counts.argmax(axis=1)] if len(values) else np.zeros(n_clusters, np.int64)
    return np.where(counts.sum(axis=1) > 0, majority, -1).astype(np.int64)


def fine_label_errors(
    test_emb,
    test_fine,
    train_emb,
    train_fine,
    *,
    k: int = 128,
    index=None,
    lengthscale: float | None = None,
) -> dict[str, float]:
    """Error@1 / Error@5 on the fine labels of a model trained on coarse ones (paper §4.3).

    ``test_emb (N, D)`` / ``test_fine (N,)`` are scored against ``train_emb (M, D)`` /
    ``train_fine (M,)``:

    * ``knn_error_at_1``, ``knn_error_at_5``: soft kNN (§3.3 with examples as centres),
      ``label(r) = argmax_f sum_{l in k nearest training rows, fine(l) = f}
      exp(-||r - x_l||^2 / (2 sigma^2))``, ``sigma^2`` the training set's intra-fine-class
      variance (:func:`magnetdml.evaluation.evaluate` with the fine labels as reference).
    * with ``index`` (a cluster index fitted on ``train_emb`` with the *coarse* labels, so
      ``index.assignments_`` has ``M`` rows) and its kNC ``lengthscale`` (``sigma^2 / s``):
      ``knc_error_at_1``, ``knc_error_at_5``: kNC (§3.3, ``L = min(k, C)`` nearest centres)
      where each cluster is labelled with the majority fine label of its training members.
      With ``K > 1`` clusters per coarse class the clusters can separate the two fine classes
      of a pair; with ``K = 1`` one fine class of every pair has no centre (always an error).
      ``cluster_purity``: the fraction of training rows whose cluster's majority fine label is
      their own (how well the index itself splits the pairs; 1.0 = perfectly).

    Returns ``{name: float}`` (errors in [0, 1]).
    """
    test = as_embedding_matrix("test_emb", test_emb)
    test_y = as_label_vector("test_fine", test_fine, test.shape[0])
    train = as_embedding_matrix("train_emb", train_emb)
    train_y = as_label_vector("train_fine", train_fine, train.shape[0])
    k = check_int("k", k, minimum=1)
    if train.shape[1] != test.shape[1]:
        raise ValueError(
            f"train_emb must have test_emb's dimension {test.shape[1]}; got {train.shape[1]}"
        )
    knn = evaluate(
        test,
        test_y,
        reference=train,
        reference_labels=train_y,
        metrics=["error_at_1", "error_at_5"],
        k=k,
    )
    out = {"knn_error_at_1": knn["error_at_1"], "knn_error_at_5": knn["error_at_5"]}
    if index is None:
        if lengthscale is not None:
            raise ValueError(
                "lengthscale is the kNC lengthscale of index; pass index= too "
                "(or neither, for kNN only)"
            )
        return out
    if lengthscale is None:
        raise ValueError(
            "lengthscale must be given with index: the kNC lengthscale sigma^2 "
            "/ s (the run's running average of s2 over its temperature); got None"
        )
    lengthscale = check_float("lengthscale", lengthscale, strict_minimum=0.0)
    if not all(hasattr(index, a) for a in ("centroids_", "assignments_")):
        raise TypeError(
            "index must be a fitted cluster index with centroids_ and "
            f"assignments_ (e.g. magnetdml.ClusterIndex); got {type(index).__name__}"
        )
    assignments = as_label_vector("index.assignments_", index.assignments_)
    if assignments.shape[0] != train.shape[0]:
        raise ValueError(
            "index.assignments_ must have one entry per training row "
            f"({train.shape[0]}): fit the index on train_emb; got "
            f"{assignments.shape[0]}"
        )
    centroids = as_embedding_matrix("index.centroids_", index.centroids_)  # (C, D)
    fine_of_cluster = majority_labels(assignments, train_y, centroids.shape[0])  # (C,)
    members = fine_of_cluster >= 0  # every ClusterIndex cluster has members; be safe
    classifier = KNearestClusters(neighbours=k).fit(
        centroids=centroids[members],
        centroid_labels=fine_of_cluster[members],
        lengthscale=lengthscale,
    )
    ranks = classifier.true_class_ranks(test, test_y)  # (N,)
    # A fine class without a centre is wrong at every k (true_class_ranks gives it rank C,
    # which error@5 would count as a hit when there are fewer than 5 centre labels).
    ranks[~np.isin(test_y, classifier.classes_)] = np.iinfo(np.int64).max
    out["knc_error_at_1"] = float(np.mean(ranks >= 1))
    out["knc_error_at_5"] = float(np.mean(ranks >= 5))
    out["cluster_purity"] = float(np.mean(fine_of_cluster[assignments] == train_y))
    return out


def _check_ks(ks, available: int) -> np.ndarray:
    if isinstance(ks, (int, np.integer)):
        ks = [ks]
    if not isinstance(ks, Iterable):
        raise TypeError(f"ks must be a list of neighbourhood sizes; got {ks!r}")
    values = sorted({check_int("ks[i]", v, minimum=1) for v in ks})
    if not values:
        raise ValueError("ks must hold at least one neighbourhood size; got none")
    if values[-1] > available:
        raise ValueError(
            f"ks must be <= {available} (the neighbours every example has, "
            f"itself and its own class excluded where asked); got {values[-1]}"
        )
    return np.asarray(values, dtype=np.int64)


def attribute_concentration(
    embeddings,
    attribute,
    ks,
    *,
    labels=None,
    exclude_same_class: bool = False,
    batch_size: int = 4096,
) -> dict[int, float]:
    """Mean fraction of neighbours sharing the attribute, per neighbourhood size (paper §4.2).

    For every example ``n`` of ``embeddings (N, D)`` and every ``k`` in ``ks``:
    ``frac_k(n) = |{l in N_k(n) : attribute(l) = attribute(n)}| / k`` with ``N_k(n)`` its
    ``k`` nearest other rows (itself excluded; squared Euclidean, exact). Returns
    ``{k: mean_n frac_k(n)}``. With ``exclude_same_class`` (needs ``labels (N,)``) the
    neighbours are the ``k`` nearest rows of *other* classes: a class-level attribute
    (Omniglot's alphabet, CIFAR-10's animal/vehicle) is then not trivially shared by a class's
    own members, and the score measures whether similar classes sit close together.
    """
    x = as_embedding_matrix("embeddings", embeddings)
    attr = as_label_vector("attribute", attribute, x.shape[0])
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if not isinstance(exclude_same_class, (bool, np.bool_)):
        raise TypeError(f"exclude_same_class must be True or False; got {exclude_same_class!r}")
    y = None if labels is None else as_label_vector("labels", labels, x.shape[0])
    if exclude_same_class and y is None:
        raise ValueError("exclude_same_class=True needs labels= (the class of every row)")
    # Each row's own class (itself included) is at most `largest` rows of the search.
    largest = int(np.unique(y, return_counts=True)[1].max()) if exclude_same_class else 1
    ks = _check_ks(ks, x.shape[0] - largest)
    # Searching k_max + (class size - 1) rows leaves >= k_max rows of other classes.
    search_k = int(min(ks[-1] + largest - 1, x.shape[0] - 1))
    rows = max(1, min(batch_size, _MAX_CELLS // search_k))
    totals = np.zeros(len(ks))
    for start, _, idx in iter_neighbours(
        x, search_k, reference=x, exclude_self=True, batch_size=rows
    ):
        part = slice(start, start + len(idx))
        shares = attr[idx] == attr[part][:, None]  # (B, K')
        if not exclude_same_class:
            hits = np.cumsum(shares[:, : ks[-1]], axis=1)  # (B, k_max)
            totals += hits[:, ks - 1].sum(axis=0)
            continue
        other = y[idx] != y[part][:, None]  # (B, K')
        seen = np.cumsum(other, axis=1)  # others so far
        hits = np.cumsum(shares & other, axis=1)  # shared so far
        for j, size in enumerate(ks):
            at = np.argmax(seen >= size, axis=1)  # column of the size-th other row
            totals[j] += hits[np.arange(len(idx)), at].sum()
    return {
        int(size): float(total / (size * x.shape[0]))
        for size, total in zip(ks, totals, strict=True)
    }


def chance_concentration(attribute, *, labels=None, exclude_same_class: bool = False) -> float:
    """The expected :func:`attribute_concentration` of a random embedding: for each row the
    fraction of the other rows (of other classes, with ``exclude_same_class``) sharing its
    attribute, averaged. A floor to read the curves against."""
    attr = as_label_vector("attribute", attribute)
    _, attr_inv, attr_counts = np.unique(attr, return_inverse=True, return_counts=True)
    same = attr_counts[attr_inv] - 1.0  # (N,)
    others = np.full(attr.shape[0], attr.shape[0] - 1.0)
    if exclude_same_class:
        if labels is None:
            raise ValueError("exclude_same_class=True needs labels= (the class of every row)")
        y = as_label_vector("labels", labels, attr.shape[0])
        _, pair_inv, pair_counts = np.unique(
            np.stack([y, attr]), axis=1, return_inverse=True, return_counts=True
        )
        _, y_inv, y_counts = np.unique(y, return_inverse=True, return_counts=True)
        same -= pair_counts[pair_inv.reshape(-1)] - 1.0  # same attribute, same class
        others -= y_counts[y_inv] - 1.0
    return float(np.mean(same / np.maximum(others, 1.0)))
