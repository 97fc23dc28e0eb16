"""k-means++ seeding: the same seeds as scikit-learn's greedy ``kmeans_plusplus``."""

import numpy as np
import pytest
from sklearn.cluster import kmeans_plusplus

from magnetdml.clustering import kmeans as km


def _blobs(n, dim, centres, seed):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(centres, dim))
    return (means[rng.integers(0, centres, n)] + rng.normal(size=(n, dim))).astype(np.float32)


@pytest.mark.parametrize(
    "n,dim,k,seed", [(500, 8, 5, 0), (2000, 16, 40, 1), (3000, 64, 100, 2), (20_000, 32, 12, 3)]
)
def test_greedy_plusplus_picks_scikit_learns_seeds(n, dim, k, seed):
    points = _blobs(n, dim, max(2, k // 2), seed)
    ours = km.greedy_plusplus(points, k, np.random.RandomState(seed))
    _, theirs = kmeans_plusplus(
        points.astype(np.float64), k, random_state=np.random.RandomState(seed)
    )
    assert ours.tolist() == theirs.tolist()


def test_nearly_one_seed_per_point_still_gives_distinct_seeds():
    # With k close to N the last potentials are tiny and float32 near-ties may pick other
    # candidates than scikit-learn's float64; the seeds must still be distinct points.
    rows = km.greedy_plusplus(_blobs(50, 3, 5, 4), 49, np.random.RandomState(4))
    assert len(set(rows.tolist())) == 49


def test_seeds_are_distinct_points_even_with_duplicates():
    points = np.repeat(_blobs(30, 4, 3, 0), 5, axis=0)  # every point five times
    rows = km.greedy_plusplus(points, 25, np.random.RandomState(0))
    assert len({tuple(points[r]) for r in rows}) == 25


def test_seeding_subsamples_large_inputs_deterministically():
    points = _blobs(1_000, 8, 10, 5)
    first = km._plusplus_seeds(points, 10, seed=3, per_centre=4)
    assert first.shape == (10, 8)
    np.testing.assert_array_equal(first, km._plusplus_seeds(points, 10, seed=3, per_centre=4))
    assert not np.array_equal(first, km._plusplus_seeds(points, 10, seed=3))  # all points
    assert {tuple(r) for r in first} <= {tuple(p) for p in points}


def test_seeding_limits_blas_to_one_thread_without_rescanning_libraries(monkeypatch):
    # The limit must hold during seeding, be lifted after, and reuse one controller: a fresh
    # threadpool_limits per class cost ~5 ms each, more than the clustering of small classes.
    from threadpoolctl import ThreadpoolController

    seen = []
    real = km.greedy_plusplus

    def spy(points, k, rng):
        seen.append(
            [p["num_threads"] for p in ThreadpoolController().info() if p["user_api"] == "blas"]
        )
        return real(points, k, rng)

    monkeypatch.setattr(km, "greedy_plusplus", spy)
    scans = []
    monkeypatch.setattr(
        ThreadpoolController, "__init__", _counting(ThreadpoolController.__init__, scans)
    )
    km._blas_controller.cache_clear()
    before = [p["num_threads"] for p in km._blas_controller().info() if p["user_api"] == "blas"]
    for seed in range(3):
        km.kmeans(_blobs(40, 4, 3, seed), 3, seed=seed)
    assert seen and all(threads and set(threads) == {1} for threads in seen)
    after = [p["num_threads"] for p in km._blas_controller().info() if p["user_api"] == "blas"]
    assert after == before
    assert len(scans) == 1 + len(seen)  # the cached controller + the spy's own scans


def _counting(init, calls):
    def counted(self, *args, **kwargs):
        calls.append(1)
        init(self, *args, **kwargs)

    return counted
