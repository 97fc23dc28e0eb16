"""Exact k-nearest-neighbour search with faiss, in query chunks so memory stays bounded.

Every metric of the evaluation suite reads the neighbours of each query from here. Nothing is
ever materialised at ``(N, N)``: faiss ``IndexFlatL2`` tiles the distance computation
internally, and we feed it ``batch_size`` queries at a time, so the peak extra memory is about
``batch_size * k * 12`` bytes for the results plus faiss's fixed tiles, whatever ``N`` is.

Chunk sizes matter for speed: faiss computes distances with BLAS only when one search call
holds ``rows * dim >= distance_compute_blas_threshold`` (128,000 in faiss 1.15) and otherwise
falls back to a scalar loop about 10x slower per query. :func:`chunk_rows` therefore splits the
queries into equal chunks (no small remainder) of at least that many cells where the memory
bound allows, so every call but a tiny query set's stays on the BLAS kernel.

A leave-one-out search (the queries are the reference) of at least ~4M cells of 128 or more
dimensions on one thread runs instead as :mod:`~magnetdml.evaluation.self_search`, which
computes each pair's distance once (1.23x faster at 100,000 x 128) and holds its ``N x k``
results (at most ~200 MB) until it has them all.

Distances are **squared** Euclidean (what faiss ``IndexFlatL2`` returns and what the kNC / soft
kNN formulas of the paper, §3.3, use).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .._faiss import faiss
from .._validation import as_embedding_matrix, check_int
from .self_search import self_neighbours, worth_it

DEFAULT_BATCH_SIZE = 4096
# Bound on the (queries x neighbours) cells one chunk may return when chunk_rows raises a small
# batch_size to reach faiss's BLAS kernel: 2**23 cells ~ 100 MiB of distances and indices.
_MAX_CHUNK_CELLS = 1 << 23


def _blas_threshold() -> int:
    """faiss's minimum ``rows * dim`` for its BLAS kernel (older versions compare rows to 20)."""
    return int(getattr(faiss.cvar, "distance_compute_blas_threshold", 20))


def chunk_rows(n: int, dim: int, k: int, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Rows per search call for ``n`` queries of dimension ``dim`` with ``k`` results each.

    The capacity is ``batch_size`` rows, raised to ``2 * threshold / dim`` (capped at
    ``2**23 / k`` rows, ~100 MiB of results) when that is smaller, so that the equal split below
    keeps every chunk at ``rows * dim >= threshold``. The ``ceil(n / capacity)`` chunks then
    get ``ceil(n / chunks)`` rows each: a 10,000-query search in chunks of 4096 becomes 3 x 3334
    instead of 4096 + 4096 + 1808 (at 64-d the 1808-row remainder ran on the slow kernel).
    """
    if n <= 0:
        return max(1, batch_size)
    fast = -(-2 * _blas_threshold() // max(dim, 1))
    capacity = max(batch_size, min(fast, max(1, _MAX_CHUNK_CELLS // max(k, 1))))
    chunks = -(-n // capacity)
    return -(-n // chunks)


def build_index(reference: np.ndarray) -> faiss.IndexFlatL2:
    """An exact L2 faiss index over ``reference (M, D)`` float32 (C-contiguous)."""
    index = faiss.IndexFlatL2(reference.shape[1])
    index.add(reference)
    return index


def _drop_self(distances: np.ndarray, indices: np.ndarray, rows: np.ndarray):
    """Remove each query's own row from its ``k + 1`` neighbours, keeping ``k``.

    The self match is found by *index*, not by distance: with exact duplicates, another point
    can tie at distance 0 and come first. If the query is not among its ``k + 1`` neighbours
    (more than ``k`` duplicates of it), the farthest one is dropped instead: the remaining ``k``
    are then all at distance 0 like the query itself, so the result is still exact.
    """
    is_self = indices == rows[:, None]  # (B, k+1)
    missing = ~is_self.any(axis=1)
    is_self[missing, -1] = True
    keep = ~is_self
    b, k1 = indices.shape
    return distances[keep].reshape(b, k1 - 1), indices[keep].reshape(b, k1 - 1)


def iter_neighbours(
    queries: np.ndarray,
    k: int,
    *,
    reference: np.ndarray | None = None,
    index: faiss.Index | None = None,
    exclude_self: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(start, sq_distances (B, k) float32, indices (B, k) int64)`` per query chunk.

    Rows ``start .. start + B`` of ``queries (N, D)`` (float32, validated by the caller) get
    their ``k`` nearest rows of ``reference (M, D)`` (or of a prebuilt ``index``), nearest
    first. With ``exclude_self=True`` the queries *are* the reference (row ``i`` is reference
    row ``i``) and each query is removed from its own neighbour list (leave-one-out). Chunks
    hold about ``batch_size`` rows, split evenly (see :func:`chunk_rows`). ``k``
    must not exceed the number of available references (``M``, or ``M - 1`` when excluding
    self); callers clip it. A leave-one-out search large enough for it to pay
    (:func:`~magnetdml.evaluation.self_search.worth_it`) computes each pair's distance once
    (:func:`~magnetdml.evaluation.self_search.self_neighbours`; ``index`` is then not used),
    holding its ``N x k`` results until the end.
    """
    n = queries.shape[0]
    if exclude_self and worth_it(n, queries.shape[1], k, faiss.omp_get_max_threads()):
        distances, indices = self_neighbours(queries, k)
        step = chunk_rows(n, queries.shape[1], k, batch_size)
        for start in range(0, n, step):
            yield start, distances[start : start + step], indices[start : start + step]
        return
    if index is None:
        index = build_index(reference)
    search_k = k + 1 if exclude_self else k
    if search_k > index.ntotal:
        raise ValueError(
            f"k={k} neighbours requested but only {index.ntotal} reference points "
            f"are available{' (minus the query itself)' if exclude_self else ''}"
        )
    step = chunk_rows(n, queries.shape[1], search_k, batch_size)
    for start in range(0, n, step):
        chunk = queries[start : start + step]  # (B, D)
        distances, indices = index.search(chunk, search_k)  # (B, k'), (B, k')
        # faiss computes ||x||^2 + ||y||^2 - 2 x.y, which can round to tiny negatives.
        np.maximum(distances, 0.0, out=distances)
        if exclude_self:
            rows = np.arange(start, start + chunk.shape[0], dtype=np.int64)
            distances, indices = _drop_self(distances, indices, rows)
        yield start, distances, indices.astype(np.int64, copy=False)


def nearest_neighbours(
    queries, k: int, reference=None, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest reference rows of every query: ``(sq_distances (N, k), indices (N, k))``.

    ``reference=None`` searches ``queries`` against themselves with each query excluded from its
    own neighbours (as scikit-learn's ``kneighbors(X=None)``). Exact search (faiss
    ``IndexFlatL2``), squared Euclidean distances, nearest first. The output is ``N * k``: for
    metrics at large ``N`` use :func:`iter_neighbours`, which streams chunks instead.
    """
    queries = as_embedding_matrix("queries", queries)
    exclude_self = reference is None
    reference = queries if exclude_self else as_embedding_matrix("reference", reference)
    if reference.shape[1] != queries.shape[1]:
        raise ValueError(
            f"reference must have the queries' dimension {queries.shape[1]}; "
            f"got {reference.shape[1]}"
        )
    available = reference.shape[0] - (1 if exclude_self else 0)
    k = check_int("k", k, minimum=1)
    if k > available:
        raise ValueError(
            f"k must be <= the number of reference points ({available}"
            f"{', the query itself excluded' if exclude_self else ''}); got {k}"
        )
    batch_size = check_int("batch_size", batch_size, minimum=1)
    parts = list(
        iter_neighbours(
            queries, k, reference=reference, exclude_self=exclude_self, batch_size=batch_size
        )
    )
    if not parts:
        return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
    return (np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]))
