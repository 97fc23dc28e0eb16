"""Chunked faiss k-NN search against a brute-force numpy reference."""

import numpy as np
import pytest

from magnetdml.evaluation import iter_neighbours, nearest_neighbours


def _brute(queries, reference, k, exclude_self):
    d = ((queries[:, None, :].astype(np.float64) - reference[None, :, :]) ** 2).sum(-1)
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, axis=1), order


@pytest.mark.parametrize("batch_size", [7, 4096])
def test_matches_brute_force_with_and_without_self(batch_size):
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


def test_self_excluded_by_index_even_among_duplicates():
    # Rows 0..4 are the same point: another copy can tie with the query at distance 0.
    rng = np.random.default_rng(1)
    x = np.concatenate([np.ones((5, 3)), rng.normal(size=(20, 3)) + 5]).astype(np.float32)
    d, i = nearest_neighbours(x, 4, batch_size=3)
    assert not (i == np.arange(25)[:, None]).any()
    np.testing.assert_array_equal(np.sort(i[:5], axis=1), [sorted(set(range(5)) - {r})
                                                           for r in range(5)])
    np.testing.assert_allclose(d[:5], 0.0, atol=1e-6)
    # More duplicates than k: the query is not among its k+1 hits; k zero-distance copies remain.
    d, i = nearest_neighbours(x, 2)
    assert not (i == np.arange(25)[:, None]).any()
    np.testing.assert_allclose(d[:5], 0.0, atol=1e-6)


def test_iter_neighbours_chunks_cover_every_query_once():
    x = np.random.default_rng(2).normal(size=(23, 4)).astype(np.float32)
    starts = [(s, len(i)) for s, _, i in iter_neighbours(x, 3, reference=x, batch_size=10)]
    assert starts == [(0, 10), (10, 10), (20, 3)]


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
