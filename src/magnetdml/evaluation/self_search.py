"""Leave-one-out k-nearest neighbours of a set among itself, each pair's distance computed once.

When the queries are their own reference (``evaluate(x, y)``: every example against all the
others), the distance matrix is symmetric. A search of every query against the reference
computes all ``N^2`` distances; here the rows are cut into blocks of ``B`` and only the block
pairs ``i <= j`` are computed, each block ``D_ij`` feeding both its rows' and its columns'
results: half the matrix products.

Each query keeps its ``k`` nearest so far in a faiss max-heap (``float_maxheap_array_t``), whose
top ``t`` is its current ``k``-th distance. Only a block's distances below their heap's ``t``
can enter, and after the first few blocks few are: each block is compared with the tops once
(in numpy, ~0.5 ns a distance), and only the distances below are gathered and offered to the
heaps (``addn_with_ids``), where faiss's own search updates its reservoir or heap for every
distance. First every block is searched among itself, which fills every heap: a block that
still has more than ``2k`` candidates a heap is first cut at each heap's ``k``-th smallest
distance there (``np.partition``, ~1 ns a distance, against ~7 ns for offering all of it).

A block is one matrix product of ``[x_i, ||x_i||^2, 1]`` with ``[-2 x_j, 1, ||x_j||^2]``,
which is ``||x_i - x_j||^2`` with the norms added inside the product: squared Euclidean, as
faiss's ``IndexFlatL2``, up to float rounding (nearly tied neighbours can swap). The search is
exact: every pair is compared, and the diagonal (each query itself) never enters.

Memory: the ``N x k`` results (12 bytes a cell) are held until the end, so :func:`worth_it`
bounds ``N k``; past it, or where this is not faster, the caller streams faiss searches in
chunks instead.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from .._faiss import faiss
from ..clustering.kmeans import blas_threads

#: Most ``N * k`` result cells held at once (12 bytes each: ~200 MB).
MAX_CELLS = 1 << 24
#: Rows per block (a 2048 x 2048 float32 block is 16 MB; its product runs near BLAS's peak).
BLOCK = 2048


def worth_it(n: int, dim: int, k: int, threads: int) -> bool:
    """Whether a leave-one-out search of ``n`` points of ``dim`` for ``k`` neighbours on
    ``threads`` threads runs here rather than as faiss searches: its ``n x k`` results fit
    :data:`MAX_CELLS`, and the half of the matrix products it saves outweighs its selection.

    Measured (``benchmarks/evaluation_speed.py``'s Gaussian classes, shuffled; faiss's time
    over this one's; BLAS, faiss and torch on one thread each): for k = 100, 10,000 x 128
    0.92x, 10,000 x 256 1.09x, 10,000 x 512 1.29x, 30,000 x 128 1.10x, 30,000 x 256 1.28x,
    50,000 x 128 1.16x, 100,000 x 128 1.23x, but 100,000 x 64 1.00x (the products are cheap
    next to the selection); at 30,000 x 256 k = 10 1.52x, k = 128 1.27x, k = 300 1.06x (more
    candidates enter the heaps). The selection runs on one thread, so on two threads faiss's
    parallel search wins (50,000 x 128 0.68x, 30,000 x 256 0.83x)."""
    if threads != 1 or not 0 < k <= 128 or k >= n or n * k > MAX_CELLS:
        return False
    return dim >= 128 and n * dim >= 1 << 22


def self_neighbours(x: np.ndarray, k: int, *, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """``(sq_distances (N, k) float32, indices (N, k) int64)``: each row of ``x (N, D)``
    (float32, C-contiguous, finite) against all the other rows, nearest first, itself left
    out. ``1 <= k < N``. Matrix products use as many BLAS threads as faiss has OpenMP
    threads (torch's count, or ``magnetdml evaluate --threads``)."""
    n = x.shape[0]
    distances = np.empty((n, k), np.float32)
    indices = np.empty((n, k), np.int64)
    heaps = faiss.float_maxheap_array_t()
    heaps.nh, heaps.k = n, k
    heaps.val, heaps.ids = faiss.swig_ptr(distances), faiss.swig_ptr(indices)
    heaps.heapify()  # every top +inf
    tops = distances[:, 0]  # (N,) a view: each heap's current k-th distance
    norms = np.einsum("ij,ij->i", x, x)[:, None]  # (N, 1)
    ones = np.ones((min(block, n), 1), np.float32)

    def left(a: int, b: int) -> np.ndarray:  # (B, D + 2): [x, ||x||^2, 1]
        return np.hstack([x[a:b], norms[a:b], ones[: b - a]])

    def right(a: int, b: int) -> np.ndarray:  # (B, D + 2): [-2 x, 1, ||x||^2]
        return np.hstack([-2.0 * x[a:b], ones[: b - a], norms[a:b]])

    def product(rows: tuple[int, int], columns: tuple[int, int]) -> np.ndarray:
        return left(*rows) @ right(*columns).T  # (rows, columns) squared distances

    starts = [(a, min(n, a + block)) for a in range(0, n, block)]
    scratch = {}  # shape -> reused block and masks: no fresh pages for every pair
    with blas_threads(faiss.omp_get_max_threads()):
        for i0, i1 in starts:  # each block among itself first: every heap full, its top a bound
            own = product((i0, i1), (i0, i1))
            np.fill_diagonal(own, np.inf)  # never its own neighbour
            _offer(heaps, own, own < tops[i0:i1, None], tops[i0:i1], i0, i0)
        for a, (i0, i1) in enumerate(starts):
            rows = left(i0, i1)
            for j0, j1 in starts[a + 1 :]:
                shape = (i1 - i0, j1 - j0)
                if shape not in scratch:
                    scratch[shape] = (np.empty(shape, np.float32), *np.empty((2, *shape), bool))
                pair, below_rows, below_columns = scratch[shape]
                np.matmul(rows, right(j0, j1).T, out=pair)  # (Bi, Bj) = ||x_i - x_j||^2
                # both masks while the block is in cache (the rows' heaps leave the columns')
                np.less(pair, tops[i0:i1, None], out=below_rows)
                np.less(pair, tops[None, j0:j1], out=below_columns)
                _offer(heaps, pair, below_rows, tops[i0:i1], i0, j0)
                transposed = partial(product, (j0, j1), (i0, i1))  # (Bj, Bi), if needed
                _offer(heaps, pair, below_columns, tops[j0:j1], j0, i0, columns=transposed)
    heaps.reorder()  # each row sorted, nearest first
    np.maximum(distances, 0.0, out=distances)  # ||a||^2 + ||b||^2 - 2ab can round below 0
    return distances, indices


def _offer(
    heaps,
    pair: np.ndarray,
    below: np.ndarray,
    tops: np.ndarray,
    row0: int,
    id0: int,
    *,
    columns: Callable[[], np.ndarray] | None = None,
) -> None:
    """Offer the distances of ``pair (A, C)`` (C-contiguous) below their heap's top (where
    ``below (A, C)``) to the heaps.

    Row ``a`` is heap ``row0 + a`` (top ``tops[a]``), column ``c`` its candidate ``id0 + c``.
    With ``columns`` the roles swap: column ``c`` is heap ``row0 + c`` (top ``tops[c]``), row
    ``a`` its candidate ``id0 + a``, and ``columns()`` computes the transposed block, needed
    only to cut heaps that are still filling (the product again is 4x faster than
    transposing a 2048 x 2048 block)."""
    heap_axis = 0 if columns is None else 1
    count = int(np.count_nonzero(below))
    if count == 0:
        return
    k, heap_count, others = heaps.k, pair.shape[heap_axis], pair.shape[1 - heap_axis]
    if count > 2 * k * heap_count and k < others:  # filling: first cut at each heap's k-th
        if columns is not None:
            pair, heap_axis = columns(), 0  # (C, A): one row per heap
        kth = np.partition(pair, k - 1, axis=1)[:, k - 1]  # (H,)
        cut = np.minimum(tops, np.nextafter(kth, np.float32(np.inf)))  # ties at the k-th too
        below = pair < cut[:, None]
        count = int(np.count_nonzero(below))
    flat = np.flatnonzero(below)  # row-major
    stored_row, stored_col = np.divmod(flat, pair.shape[1])
    values = pair.reshape(-1)[flat]
    if heap_axis == 0:  # already grouped by heap
        heap, candidate = stored_row, stored_col
    else:  # grouped by column: a radix sort of small integers
        small = np.int16 if pair.shape[1] < 1 << 15 else np.int64
        order = np.argsort(stored_col.astype(small), kind="stable")
        heap, candidate, values = stored_col[order], stored_row[order], values[order]
    per_heap = np.bincount(heap, minlength=heap_count)  # (H,)
    width = int(per_heap.max())
    first = np.zeros(heap_count, np.int64)
    np.cumsum(per_heap[:-1], out=first[1:])
    slot = np.arange(count) - first[heap]
    padded = np.full((heap_count, width), np.inf, np.float32)  # +inf never enters a heap
    ids = np.full((heap_count, width), -1, np.int64)
    padded[heap, slot] = values
    ids[heap, slot] = candidate + id0
    heaps.addn_with_ids(width, faiss.swig_ptr(padded), faiss.swig_ptr(ids), width, row0, heap_count)
