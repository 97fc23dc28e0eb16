"""``evaluate``: every metric users compare embeddings on, in one chunked pass over neighbours."""

from __future__ import annotations

import numpy as np

from .._progress import bar
from .._validation import as_embedding_matrix, as_label_vector, check_int
from ._scores import class_indices, neighbour_class_ranks
from .clustering import CLUSTERING_METRICS, clustering_scores
from .knc import KNearestClusters, knc_errors
from .knn import estimate_variance
from .neighbours import DEFAULT_BATCH_SIZE, iter_neighbours
from .retrieval import map_at_r, precision_at_1, r_precision, recall_at

CLASSIFICATION_METRICS = ("knn_error", "error_at_1", "error_at_5")
RETRIEVAL_METRICS = (
    "precision_at_1",
    "r_precision",
    "map_at_r",
    "recall_at_1",
    "recall_at_2",
    "recall_at_4",
    "recall_at_8",
)
KNC_METRICS = ("knc_error", "knc_error_at_1", "knc_error_at_5")
METRICS = CLASSIFICATION_METRICS + RETRIEVAL_METRICS + CLUSTERING_METRICS + KNC_METRICS
#: Metrics of classes never trained on: no index or class scores (their classes have no
#: centres or references), only clustering and retrieval among themselves (paper §4, seed 003).
#: What training's summary, ``evaluate_run`` and the experiments report for unseen classes.
UNSEEN_METRICS = (
    "nmi",
    "ami",
    "ari",
    "f1",
    "precision_at_1",
    "recall_at_1",
    "recall_at_2",
    "recall_at_4",
    "recall_at_8",
    "map_at_r",
    "r_precision",
)
_TOP = {
    "knn_error": 1,
    "error_at_1": 1,
    "error_at_5": 5,
    "knc_error": 1,
    "knc_error_at_1": 1,
    "knc_error_at_5": 5,
}
# Bound on the (queries x neighbours) cells searched at once: 2**23 cells ~ 100 MiB of results
# and float64 per-query work arrays, whatever R (the class size) is.
_MAX_NEIGHBOUR_CELLS = 1 << 23


def _requested(metrics, has_index: bool) -> list[str]:
    if metrics is None:
        return [m for m in METRICS if has_index or m not in KNC_METRICS]
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid names: {', '.join(METRICS)}")
    if not has_index and any(m in KNC_METRICS for m in names):
        raise ValueError(
            "the knc_* metrics need index= (a fitted cluster index, or any object "
            "with centroids_ and centroid_labels_) and lengthscale=; got index=None"
        )
    return list(dict.fromkeys(names))


def evaluate(
    embeddings,
    labels,
    reference=None,
    reference_labels=None,
    metrics=None,
    *,
    k: int = 128,
    index=None,
    lengthscale: float | None = None,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_r: int | None = None,
) -> dict[str, float]:
    """Score query ``embeddings (N, D)`` with ``labels (N,)``; returns ``{metric: float}``.

    Neighbours are the rows of ``reference (N_ref, D)`` / ``reference_labels (N_ref,)``; when
    ``reference`` is None the queries are their own reference and **each query is excluded
    from its own neighbours** (leave-one-out). Distances are squared Euclidean, search is exact
    (faiss ``IndexFlatL2``) and streamed ``batch_size`` queries at a time (fewer when many
    neighbours are needed), so no ``N x N`` matrix is ever built. ``metrics=None`` computes
    every metric that applies (the ``knc_*`` ones only with ``index``).

    Classification (paper §3.3-4, Fig. 4e/f), over all queries:
      - ``knn_error``: soft kNN error, ``label(r) = argmax_c sum_{l in L nearest, C(l)=c}
        exp(-||r - x_l||^2 / (2 sigma^2))`` with ``L = min(k, N_ref)`` and ``sigma^2`` the
        reference set's intra-class variance (:func:`estimate_variance`, scale invariant);
      - ``error_at_1`` (equal to ``knn_error``), ``error_at_5``: the query's class is not among
        the 1 / 5 best-scored classes (ties to the lower class);
      - ``knc_error`` (= ``knc_error_at_1``), ``knc_error_at_5``: the same with the ``L =
        min(k, C)`` nearest centres of ``index`` (``centroids_``, ``centroid_labels_``) and
        the ``lengthscale`` (``sigma^2 / s`` of training), see :class:`KNearestClusters`.
      A query whose class has no reference (or no centre) is an error.
    Retrieval (Musgrave et al. 2020; Song et al. 2016), see :mod:`.retrieval`: ``precision_at_1``,
      ``r_precision``, ``map_at_r``, ``recall_at_{1,2,4,8}``. ``R`` is the number of references
      sharing the query's label (itself excluded): the standard definition, and
      pytorch-metric-learning's default (``k="max_bin_count"``); ``max_r`` caps it (an
      explicit approximation that bounds the search for very large classes; the search is
      streamed in chunks either way, so memory stays bounded). Queries
      with ``R = 0`` are left out of these averages (as pytorch-metric-learning's "lone
      queries"); if every query is lone they are NaN.
    Clustering (Song et al. 2016), see :mod:`.clustering`: k-means++-seeded k-means of the
      query embeddings into ``len(unique(labels))`` clusters (seed ``seed``), scored with
      ``nmi``, ``ami``, ``ari`` and pairwise ``f1`` against ``labels``.
    """
    x = as_embedding_matrix("embeddings", embeddings)
    y = as_label_vector("labels", labels, x.shape[0])
    if x.shape[0] == 0:
        raise ValueError("embeddings must hold at least one row; got 0")
    self_reference = reference is None
    if self_reference != (reference_labels is None):
        raise ValueError(
            "pass reference and reference_labels together (or neither, to use the "
            "queries as their own reference)"
        )
    ref = x if self_reference else as_embedding_matrix("reference", reference)
    ref_y = (
        y if self_reference else as_label_vector("reference_labels", reference_labels, ref.shape[0])
    )
    if ref.shape[1] != x.shape[1]:
        raise ValueError(
            f"reference must have the embeddings' dimension {x.shape[1]}; got {ref.shape[1]}"
        )
    k = check_int("k", k, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if max_r is not None:
        max_r = check_int("max_r", max_r, minimum=1, fix="or None for no cap")
    names = _requested(metrics, index is not None)
    results: dict[str, float] = {}

    needs_knn = [m for m in names if m in CLASSIFICATION_METRICS or m in RETRIEVAL_METRICS]
    if needs_knn:
        results.update(
            _neighbour_metrics(x, y, ref, ref_y, self_reference, needs_knn, k, batch_size, max_r)
        )
    clustering = [m for m in names if m in CLUSTERING_METRICS]
    if clustering:
        results.update(clustering_scores(x, y, clustering, seed=seed))
    knc = [m for m in names if m in KNC_METRICS]
    if knc:
        classifier = KNearestClusters(neighbours=k, batch_size=batch_size).fit(index, lengthscale)
        results.update(knc_errors(classifier, x, y, knc))
    return {m: results[m] for m in names}


def _neighbour_metrics(x, y, ref, ref_y, self_reference, names, k, batch_size, max_r):
    """Classification and retrieval metrics from one streamed k-NN search."""
    available = ref.shape[0] - int(self_reference)
    if available < 1:
        raise ValueError(
            "neighbour metrics need >= 2 embeddings when the queries are their own "
            "reference (each query is excluded from its own neighbours); got 1"
        )
    classes, ref_counts = np.unique(ref_y, return_counts=True)
    truth = class_indices(y, classes)  # (N,), -1 if absent
    relevant = np.where(truth >= 0, ref_counts[np.maximum(truth, 0)], 0) - int(self_reference)
    relevant = np.maximum(relevant, 0)  # (N,) R per query
    if max_r is not None:
        relevant = np.minimum(relevant, max_r)
    lone = relevant == 0

    classify = [m for m in names if m in CLASSIFICATION_METRICS]
    retrieve = [m for m in names if m in RETRIEVAL_METRICS]
    needed = [1]
    if classify:
        needed.append(k)
    needed += [int(m.rsplit("_", 1)[1]) for m in retrieve if m.startswith("recall_at_")]
    if {"r_precision", "map_at_r"} & set(retrieve):
        needed.append(int(relevant.max()))
    search_k = min(max(needed), available)
    soft_k = min(k, available)
    rows = max(1, min(batch_size, _MAX_NEIGHBOUR_CELLS // search_k))

    variance = estimate_variance(ref, ref_y) if classify else None
    ref_classes = class_indices(ref_y, classes)  # (N_ref,)
    ranks = np.empty(x.shape[0], dtype=np.int64)
    sums = dict.fromkeys(retrieve, 0.0)
    shown = bar(total=x.shape[0], desc="neighbour search", unit="query")
    for start, distances, indices in iter_neighbours(
        x, search_k, reference=ref, exclude_self=self_reference, batch_size=rows
    ):
        part = slice(start, start + len(indices))
        shown.update(len(indices))
        if classify:
            ranks[part] = neighbour_class_ranks(
                distances[:, :soft_k],
                ref_classes[indices[:, :soft_k]],
                truth[part],
                variance,
                len(classes),
            )
        if retrieve:
            keep = ~lone[part]
            matches = ref_y[indices[keep]] == y[part][keep][:, None]  # (B', k) bool
            r = np.minimum(relevant[part][keep], search_k)
            for m in retrieve:
                if m == "precision_at_1":
                    scores = precision_at_1(matches)
                elif m == "r_precision":
                    scores = r_precision(matches, r)
                elif m == "map_at_r":
                    scores = map_at_r(matches, r)
                else:
                    scores = recall_at(matches, int(m.rsplit("_", 1)[1]))
                sums[m] += float(scores.sum())
    shown.close()
    out = {m: float(np.mean(ranks >= _TOP[m])) for m in classify}
    queries = int((~lone).sum())
    out.update({m: (sums[m] / queries if queries else float("nan")) for m in retrieve})
    return out
