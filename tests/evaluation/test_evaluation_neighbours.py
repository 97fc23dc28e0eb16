"""Chunked faiss k-NN search against a brute-force numpy reference."""

import numpy as np
import pytest

from magnetdml.evaluation import iter_neighbours, nearest_neighbours
from magnetdml.evaluation import neighbours as neighbours_module


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of ``batch_size`` rows, as if faiss had no BLAS minimum: tiny data still gets
    several chunks, so the per-chunk bookkeeping (offsets, self exclusion) is exercised."""
    monkeypatch.setattr(neighbours_module, "_blas_threshold", lambda: 1)


def _brute(queries, reference, k, exclude_self):
    d = ((queries[:, None, :].astype(np.float64) - reference[None, :, :]) ** 2).sum(-1)
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, axis=1), order


@pytest.mark.parametrize("batch_size", [7, 4096])
def test_matches_brute_force_with_and_without_self(batch_size, small_chunks):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    ref = rng.normal(size=(45, 5)).astype(np.float32)
    d, i = nearest_neighbours(x, 9, ref, batch_size=batch_size)
    bd, bi = _brute(x, ref, 9, False)
    np.testing.assert_array_equal(i, bi)
    np.testing.assert_allclose(d, bd, rtol=1e-4, atol=1e-5)
    d, i = nearest_neighbours(x, 9, batch_size=batch_size)
    bd, bi = _brute(x, x, 9, True)
    np.testing.assert_array_equal(i, bi)
    np.testing.assert_allclose(d, bd, rtol=1e-4, atol=1e-5)
    assert not (i == np.arange(60)[:, None]).any()


def test_self_excluded_by_index_even_among_duplicates(small_chunks):
    # Rows 0..4 are the same point: another copy can tie with the query at distance 0.
    rng = np.random.default_rng(1)
    x = np.concatenate([np.ones((5, 3)), rng.normal(size=(20, 3)) + 5]).astype(np.float32)
    d, i = nearest_neighbours(x, 4, batch_size=3)
    assert not (i == np.arange(25)[:, None]).any()
    np.testing.assert_array_equal(
        np.sort(i[:5], axis=1), [sorted(set(range(5)) - {r}) for r in range(5)]
    )
    np.testing.assert_allclose(d[:5], 0.0, atol=1e-6)
    # More duplicates than k: the query is not among its k+1 hits; k zero-distance copies remain.
    d, i = nearest_neighbours(x, 2)
    assert not (i == np.arange(25)[:, None]).any()
    np.testing.assert_allclose(d[:5], 0.0, atol=1e-6)


def test_iter_neighbours_chunks_cover_every_query_once(small_chunks):
    x = np.random.default_rng(2).normal(size=(23, 4)).astype(np.float32)
    starts = [(s, len(i)) for s, _, i in iter_neighbours(x, 3, reference=x, batch_size=10)]
    assert starts == [(0, 8), (8, 8), (16, 7)]  # equal chunks, no 3-row remainder


@pytest.mark.parametrize(
    "n, dim, k, batch_size",
    [
        (10_000, 64, 100, 4096),
        (100_000, 128, 100, 4096),
        (10_000, 32, 1000, 4096),
        (5_000, 16, 10, 100),
        (1_000_000, 128, 1001, 4096),
    ],
)
def test_chunks_stay_on_the_blas_kernel_within_the_memory_bound(n, dim, k, batch_size):
    threshold = neighbours_module._blas_threshold()
    rows = neighbours_module.chunk_rows(n, dim, k, batch_size)
    sizes = [min(rows, n - s) for s in range(0, n, rows)]
    assert sum(sizes) == n and max(sizes) - min(sizes) < len(sizes)  # an even split
    assert min(sizes) * dim >= min(threshold, n * dim)  # every call on BLAS
    assert rows <= max(batch_size, neighbours_module._MAX_CHUNK_CELLS // k)


def test_chunks_respect_the_memory_bound_for_huge_k():
    # 84 rows of 100k neighbours exceed 2**23 cells: the BLAS minimum (2000 rows) gives way.
    rows = neighbours_module.chunk_rows(10_000, 128, 100_000, 50)
    assert 50 <= rows <= (1 << 23) // 100_000


def test_errors_name_the_parameter():
    x = np.zeros((5, 3), np.float32)
    with pytest.raises(ValueError, match=r"k must be <= the number of reference points \(4"):
        nearest_neighbours(x, 5)
    with pytest.raises(ValueError, match="reference must have the queries' dimension 3; got 2"):
        nearest_neighbours(x, 1, np.zeros((5, 2)))
    with pytest.raises(TypeError, match="k must be an integer"):
        nearest_neighbours(x, 1.5)
    with pytest.raises(ValueError, match="queries must be a 2-D array"):
        nearest_neighbours(np.zeros(3), 1)


def test_embedding_matrix_checks_without_copying():
    from magnetdml._validation import as_embedding_matrix

    x = np.random.default_rng(3).normal(size=(50, 4)).astype(np.float32)
    assert as_embedding_matrix("x", x) is x
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[7, 2] = bad
        with pytest.raises(ValueError, match=r"x must be finite; 1 row\(s\) hold NaN or inf"):
            as_embedding_matrix("x", y)
    y = x.copy()
    y[0, 0] = -1e30  # finite, but its squares overflow float32
    with pytest.raises(ValueError, match="x holds values up to 1e\\+30"):
        as_embedding_matrix("x", y)
