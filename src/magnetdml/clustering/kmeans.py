"""k-means with k-means++ seeding: the paper's initialisation (§3.2) with fast Lloyd steps.

``faiss.Kmeans`` seeds at random, which on well separated data often merges two true clusters
and splits another (``benchmarks/kmeans_seeding.py`` measures it). We seed with greedy
k-means++ (scikit-learn's algorithm and random draws, in float32: :func:`greedy_plusplus`)
and hand the seeds to faiss as ``init_centroids``; a warm start passes the previous centres
instead.

On an accelerator (``device="cuda"``) the Lloyd steps run in faiss's GPU k-means when faiss was
built with GPU support, else in plain torch on that device (``lloyd_torch``), so a GPU machine
with ``faiss-cpu`` still clusters on the GPU.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from .._faiss import faiss, faiss_threads

# Rows per chunk of the (chunk, k) distance matrix in the torch path: bounds memory at any N.
_CHUNK = 65536
# Below this many multiply-adds per Lloyd step faiss runs single-threaded: OpenMP start-up and
# spinning cost more than the work (measured: 8 centres of 250 points, 128 ms with 2 busy
# threads, 1.8 ms with one). Per-class k-means in the index is nearly always this small.
_SMALL = 1 << 24
# k-means++ seeds are drawn from at most this many points per centre (see _plusplus_seeds).
SEED_SAMPLE = 256
# Points per chunk of k-means++ distance blocks: (trials x chunk) float32 stays in cache.
_SEED_CHUNK = 16384


@functools.cache
def _blas_controller() -> ThreadpoolController:
    """The process's BLAS thread pools, found once. ``threadpool_limits`` rescans every
    loaded library on each call (~5 ms): in four fits of a 173-class index, 693 per-class
    seedings spent 3.3 s of the 4.3 s there (``benchmarks/index_small_classes.py``). numpy
    and torch load their BLAS at import, before the first call."""
    return ThreadpoolController()


@contextmanager
def blas_threads(threads: int) -> Iterator[None]:
    """numpy's (and every loaded) BLAS limited to ``threads`` inside the block."""
    with _blas_controller().limit(limits=max(1, threads), user_api="blas"):
        yield


class KMeansResult(NamedTuple):
    """``centroids (k, D)`` float32, ``assignments (N,)`` int64 in ``[0, k)``, ``inertia``
    (the sum of squared distances of the points to their centres)."""

    centroids: np.ndarray
    assignments: np.ndarray
    inertia: float


def _faiss_has_gpu() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def kmeans(
    points: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    max_iter: int = 20,
    init: np.ndarray | None = None,
    device: str = "cpu",
    seed_sample: int = SEED_SAMPLE,
) -> KMeansResult:
    """Cluster ``points (N, D)`` into ``min(k, N)`` clusters.

    Minimises ``sum_n ||x_n - c_{a(n)}||^2`` by Lloyd iterations from k-means++ seeds (or from
    ``init (k, D)``, a warm start). On CPU, empty clusters are re-seeded by faiss (it splits
    the largest); the torch path keeps an empty cluster's previous centre. Deterministic for a
    given ``seed``. ``device`` is a torch device string ("cpu", "cuda", "cuda:1").
    ``seed_sample``: k-means++ draws its seeds from at most this many points per centre; the
    Lloyd steps always use every point.
    """
    points = np.ascontiguousarray(points, dtype=np.float32)
    n, dim = points.shape
    k = min(int(k), n)
    if k <= 1:
        centroid = points.mean(axis=0, keepdims=True)
        inertia = float(((points - centroid) ** 2).sum())
        return KMeansResult(centroid, np.zeros(n, dtype=np.int64), inertia)
    if k == n and init is None:
        # one cluster per point is the exact optimum (inertia 0): skip seeding and Lloyd,
        # which for many tiny classes cost ~3 ms each in scikit-learn's validation alone.
        return KMeansResult(points.copy(), np.arange(n, dtype=np.int64), 0.0)
    if init is None:
        init = _plusplus_seeds(points, k, seed, seed_sample)
    init = np.ascontiguousarray(init, dtype=np.float32)
    if init.shape != (k, dim):
        raise ValueError(f"init must have shape ({k}, {dim}) for a warm start; got {init.shape}")
    on_cpu = torch.device(device).type == "cpu"
    if not on_cpu and not _faiss_has_gpu():
        return lloyd_torch(points, init, max_iter=max_iter, device=device)
    with faiss_threads(1 if n * k * dim < _SMALL else None):  # small: one thread
        if max_iter == 0:
            centroids = init
        else:
            # min_points_per_centroid=1 silences faiss's "too few points" warning for small
            # classes; max_points_per_centroid=n disables its silent subsampling.
            model = faiss.Kmeans(
                dim,
                k,
                niter=max_iter,
                seed=seed,
                verbose=False,
                min_points_per_centroid=1,
                max_points_per_centroid=n,
                gpu=not on_cpu,
            )
            model.train(points, init_centroids=init)
            centroids = model.centroids
        index = faiss.IndexFlatL2(dim)
        index.add(centroids)
        distances, nearest = index.search(points, 1)
    return KMeansResult(
        np.ascontiguousarray(centroids), nearest[:, 0].astype(np.int64), float(distances.sum())
    )


def _plusplus_seeds(
    points: np.ndarray, k: int, seed: int, per_centre: int = SEED_SAMPLE
) -> np.ndarray:
    """k-means++ seeds ``(k, D)`` drawn from at most ``per_centre * k`` of the points.

    Seeding costs O(N k D) and dominated the clustering of 1M points; like faiss (which trains
    on 256 points per centroid) we seed on a seeded subsample, and the Lloyd steps that follow
    use every point. One BLAS thread: two busy threads made seeding ~20x slower on the loaded
    2-core machine (10k x 128, k=100).
    """
    rng = np.random.RandomState(seed)
    if points.shape[0] > per_centre * k:
        points = points[np.sort(rng.choice(points.shape[0], per_centre * k, replace=False))]
    with _blas_controller().limit(limits=1, user_api="blas"):
        return points[greedy_plusplus(points, k, rng)]


def greedy_plusplus(points: np.ndarray, k: int, rng: np.random.RandomState) -> np.ndarray:
    """Row indices ``(k,)`` of greedy k-means++ seeds of ``points (N, D)`` float32.

    Arthur & Vassilvitskii's D^2 sampling with scikit-learn's greedy refinement: the first seed
    uniformly at random, then at each step ``2 + int(ln k)`` candidates drawn with probability
    ``d(x)^2 / sum d^2`` (``d`` the distance to the nearest seed so far), keeping the candidate
    that leaves the smallest potential ``sum_x min(d(x)^2, ||x - c||^2)``. It draws from ``rng``
    exactly as ``sklearn.cluster.kmeans_plusplus`` does, so it picks the same seeds (up to
    float32 near-ties), ~3x faster: float32 distances in cache-sized chunks of a transposed
    copy instead of a float64 copy of the points, with the potentials accumulated in float64.
    """
    n = points.shape[0]
    trials = 2 + int(np.log(k))
    sq_norms = np.einsum("nd,nd->n", points, points)  # (N,)
    # (D, N) copy: the (T, D) @ (D, chunk) products run ~1.8x faster on it than on (N, D) rows
    columns = np.ascontiguousarray(points.T)
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = rng.choice(n, p=np.full(n, 1.0 / n))
    candidates_sq = np.empty((trials, n), dtype=np.float32)  # (T, N)
    # no seed yet: every point's floor is +inf, so row 0 becomes its distance to the first
    potential = _sq_distances(
        columns, sq_norms, chosen[:1], np.full(n, np.inf, np.float32), candidates_sq[:1]
    )[0]
    closest = candidates_sq[0].copy()  # (N,) d(x)^2
    for step in range(1, k):
        draws = rng.uniform(size=trials) * potential
        candidates = np.searchsorted(np.cumsum(closest, dtype=np.float64), draws)
        np.clip(candidates, None, n - 1, out=candidates)
        potentials = _sq_distances(columns, sq_norms, candidates, closest, candidates_sq)  # (T,)
        best = int(np.argmin(potentials))
        potential, closest = potentials[best], candidates_sq[best].copy()
        chosen[step] = candidates[best]
    return chosen


def _sq_distances(columns, sq_norms, rows, floor, out) -> np.ndarray:
    """``min(floor, squared distance)`` from the points ``rows`` to every point, the points
    given as ``columns (D, N)``, into ``out (len(rows), N)`` float32; returns its float64 row
    sums ``(len(rows),)``. Chunked so each block stays in cache."""
    centres, centre_sq = columns[:, rows].T, sq_norms[rows, None]  # (T, D), (T, 1)
    n = columns.shape[1]
    sums = np.zeros(len(rows))
    for start in range(0, n, _SEED_CHUNK):
        part = slice(start, start + _SEED_CHUNK)
        block = out[:, part]  # (T, chunk)
        np.matmul(centres, columns[:, part], out=block)
        block *= -2.0
        block += centre_sq
        block += sq_norms[None, part]
        np.maximum(block, 0.0, out=block)  # ||x||^2 + ||c||^2 - 2x.c can round below zero
        np.minimum(block, floor[None, part], out=block)
        sums += block.sum(axis=1, dtype=np.float64)
    return sums


def _assign(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre (squared Euclidean) per row, chunked: ``(N,)`` ids and ``(N,)`` distances."""
    c_sq = (centroids * centroids).sum(dim=1)  # (k,)
    ids, dists = [], []
    for start in range(0, x.shape[0], _CHUNK):
        chunk = x[start : start + _CHUNK]  # (n, D)
        # ||x||^2 - 2 x.c + ||c||^2; clamp: the expansion can dip just below zero.
        d2 = (chunk * chunk).sum(dim=1, keepdim=True) - 2 * chunk @ centroids.T + c_sq  # (n, k)
        best, arg = d2.min(dim=1)
        ids.append(arg)
        dists.append(best.clamp_min(0))
    return torch.cat(ids), torch.cat(dists)


def lloyd_torch(
    points: np.ndarray, init: np.ndarray, *, max_iter: int = 20, device: str = "cpu"
) -> KMeansResult:
    """Lloyd iterations in torch from ``init (k, D)``: the GPU path when faiss has no GPU build.

    Each iteration assigns every point to its nearest centre (squared Euclidean) and moves each
    centre to the mean of its points; a centre that loses all its points stays where it was.
    The final assignments are the nearest centres after the last update, as in faiss.
    """
    dev = torch.device(device)
    x = torch.as_tensor(np.ascontiguousarray(points, dtype=np.float32), device=dev)  # (N, D)
    centroids = torch.as_tensor(np.array(init, dtype=np.float32), device=dev)  # (k, D)
    k = centroids.shape[0]
    for _ in range(max_iter):
        ids, _ = _assign(x, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, ids, x)  # (k, D)
        counts = torch.bincount(ids, minlength=k).to(x.dtype)  # (k,)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    ids, dists = _assign(x, centroids)
    return KMeansResult(
        centroids.cpu().numpy(), ids.cpu().numpy().astype(np.int64), float(dists.double().sum())
    )
