"""The symmetric leave-one-out search against a brute-force numpy reference and faiss."""

import numpy as np
import pytest

from magnetdml.evaluation import evaluate, iter_neighbours
from magnetdml.evaluation import neighbours as neighbours_module
from magnetdml.evaluation.self_search import MAX_CELLS, self_neighbours, worth_it


def _brute(x, k):
    """Exact float64 leave-one-out neighbours: ``(sq_distances (N, k), all (N, N))``."""
    x = x.astype(np.float64)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, :k], d


def _classes(n, dim, seed, *, shuffled):
    """Gaussian classes of 10 (neighbours mostly of the own class), in class order or not."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(-(-n // 10)), 10)[:n]
    x = rng.normal(size=(labels.max() + 1, dim))[labels] + 0.5 * rng.normal(size=(n, dim))
    order = rng.permutation(n) if shuffled else np.arange(n)
    return np.ascontiguousarray(x[order], dtype=np.float32), labels[order]


@pytest.mark.parametrize("shuffled", [False, True])
@pytest.mark.parametrize(
    ("n", "k", "block"),
    [
        (50, 1, 8),  # many blocks and a partial last one
        (50, 5, 8),
        (50, 12, 8),  # k above the block: no filling cut, candidates straight to the heaps
        (50, 49, 16),  # every other point
        (61, 7, 64),  # one block: only the diagonal pass
        (300, 10, 32),
    ],
)
def test_matches_brute_force(n, k, block, shuffled):
    x, _ = _classes(n, 6, n + k, shuffled=shuffled)
    distances, indices = self_neighbours(x, k, block=block)
    expected, full = _brute(x, k)
    np.testing.assert_allclose(distances, expected, rtol=1e-4, atol=1e-4)
    assert distances.dtype == np.float32 and indices.dtype == np.int64
    assert not (indices == np.arange(n)[:, None]).any()  # never itself
    assert all(len(set(row)) == k for row in indices)  # k different neighbours
    # each index is a true neighbour: its own distance is the one reported (ties may swap)
    np.testing.assert_allclose(
        np.take_along_axis(full, indices, axis=1), expected, rtol=1e-4, atol=1e-4
    )
    assert (np.diff(distances, axis=1) >= 0).all()  # nearest first


def test_duplicates_and_a_point_alone():
    # 6 copies of one point (each has 5 others at distance 0) and points far away
    x = np.zeros((40, 3), np.float32)
    x[6:] = np.arange(34)[:, None] * np.array([10.0, 0.0, 0.0], np.float32) + 100.0
    distances, indices = self_neighbours(x, 5, block=4)
    assert (distances[:6] == 0).all()
    assert all(set(indices[i]) == set(range(6)) - {i} for i in range(6))
    expected, _ = _brute(x, 5)
    np.testing.assert_allclose(distances, expected, rtol=1e-5, atol=1e-3)


def test_iter_neighbours_takes_it_where_it_pays_with_the_same_results(monkeypatch):
    x, _ = _classes(700, 16, 3, shuffled=True)
    monkeypatch.setattr(neighbours_module, "_blas_threshold", lambda: 1)  # several chunks
    streamed = list(iter_neighbours(x, 9, reference=x, exclude_self=True, batch_size=100))
    monkeypatch.setattr(neighbours_module, "worth_it", lambda *_: True)
    calls = []
    real = neighbours_module.self_neighbours
    monkeypatch.setattr(
        neighbours_module, "self_neighbours", lambda *a, **o: calls.append(1) or real(*a, **o)
    )
    symmetric = list(iter_neighbours(x, 9, reference=x, exclude_self=True, batch_size=100))
    assert calls == [1]
    assert [s for s, _, _ in symmetric] == [s for s, _, _ in streamed]  # the same chunks
    for (_, d_faiss, i_faiss), (_, d_here, i_here) in zip(streamed, symmetric, strict=True):
        np.testing.assert_allclose(d_here, d_faiss, rtol=1e-4, atol=1e-4)
        assert np.mean(i_here == i_faiss) > 0.99  # only near ties may swap


def test_evaluate_scores_the_same_either_way(monkeypatch):
    x, y = _classes(1500, 32, 5, shuffled=True)
    metrics = ["precision_at_1", "r_precision", "map_at_r", "knn_error", "recall_at_4"]
    monkeypatch.setattr(neighbours_module, "worth_it", lambda *_: False)
    streamed = evaluate(x, y, metrics=metrics, k=20)
    monkeypatch.setattr(neighbours_module, "worth_it", lambda *_: True)
    symmetric = evaluate(x, y, metrics=metrics, k=20)
    assert symmetric == pytest.approx(streamed, abs=2e-3)  # a near tie may swap
    assert 0.0 < streamed["map_at_r"] < 1.0


def test_worth_it_only_where_measured_faster():
    assert worth_it(100_000, 128, 99, threads=1)
    assert worth_it(10_000, 512, 100, threads=1)
    assert not worth_it(100_000, 128, 99, threads=2)  # faiss's parallel search wins
    assert not worth_it(100_000, 64, 99, threads=1)  # cheap products: nothing to save
    assert not worth_it(10_000, 128, 100, threads=1)  # too small
    assert not worth_it(100_000, 128, 300, threads=1)  # many candidates: faiss's reservoir
    assert not worth_it(MAX_CELLS // 100 + 1, 128, 100, threads=1)  # results too large
    assert not worth_it(50_000, 128, 50_000, threads=1)  # k must leave another point
