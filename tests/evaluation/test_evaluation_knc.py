"""k-nearest clusters (paper §3.3) against the formula written out in numpy."""

from types import SimpleNamespace

import numpy as np
import pytest

from magnetdml.clustering import ClusterIndex
from magnetdml.evaluation import KNearestClusters, cluster_variance
from magnetdml.evaluation._scores import UNRANKED


def _setup(seed=0, classes=5, per_class=3, dim=4, n=80):
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(classes * per_class, dim)).astype(np.float32)
    centroid_labels = np.repeat(np.arange(classes) * 10 + 3, per_class)  # non-contiguous labels
    queries = rng.normal(size=(n, dim)).astype(np.float32)
    return centroids, centroid_labels, queries


def _brute_scores(queries, centroids, centroid_labels, variance, L):
    d = ((queries[:, None, :].astype(np.float64) - centroids[None]) ** 2).sum(-1)  # (N, C)
    order = np.argsort(d, axis=1)[:, :L]
    classes = np.unique(centroid_labels)
    scores = np.zeros((len(queries), len(classes)))
    for q in range(len(queries)):
        for l in order[q]:
            c = np.searchsorted(classes, centroid_labels[l])
            scores[q, c] += np.exp(-d[q, l] / (2 * variance))
    return scores / scores.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("L", [1, 4, 128])
def test_scores_match_the_formula(L):
    centroids, centroid_labels, queries = _setup()
    knc = KNearestClusters(neighbours=L, batch_size=16).fit(
        centroids=centroids, centroid_labels=centroid_labels, lengthscale=0.7
    )
    expected = _brute_scores(queries, centroids, centroid_labels, 0.7, min(L, 15))
    np.testing.assert_allclose(knc.predict_scores(queries), expected, rtol=1e-5, atol=1e-9)
    np.testing.assert_array_equal(knc.predict(queries), knc.classes_[expected.argmax(axis=1)])


def test_one_cluster_per_class_and_k1_is_nearest_class_mean():
    rng = np.random.default_rng(3)
    train = rng.normal(size=(300, 6)).astype(np.float32)
    train_labels = rng.integers(0, 7, 300)
    means = np.stack([train[train_labels == c].mean(0) for c in range(7)])
    queries = rng.normal(size=(100, 6)).astype(np.float32)
    knc = KNearestClusters(neighbours=1).fit(
        centroids=means, centroid_labels=np.arange(7), lengthscale=1.0
    )
    nearest_mean = ((queries[:, None] - means[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(knc.predict(queries), nearest_mean)


def test_duck_typed_index_equals_arrays_and_positional_variance():
    centroids, centroid_labels, queries = _setup(seed=1)
    index = SimpleNamespace(centroids_=centroids, centroid_labels_=centroid_labels)
    a = KNearestClusters(neighbours=5).fit(index, 0.5).predict_scores(queries)
    b = (
        KNearestClusters(neighbours=5)
        .fit(centroids=centroids, centroid_labels=centroid_labels, lengthscale=0.5)
        .predict_scores(queries)
    )
    np.testing.assert_array_equal(a, b)


def test_far_away_query_gives_finite_probabilities_not_zero_over_zero():
    centroids, centroid_labels, _ = _setup(seed=2)
    far = np.full((3, 4), 1e4, np.float32)
    # Every raw weight exp(-d / 2 sigma^2) underflows to 0 in float64 here.
    knc = KNearestClusters(neighbours=8).fit(
        centroids=centroids, centroid_labels=centroid_labels, lengthscale=1e-3
    )
    scores = knc.predict_scores(far)
    assert np.isfinite(scores).all()
    np.testing.assert_allclose(scores.sum(axis=1), 1.0)
    nearest = ((far[:1].astype(np.float64) - centroids) ** 2).sum(-1).argmin()
    assert (knc.predict(far) == centroid_labels[nearest]).all()


def test_invariant_to_global_scale_when_variance_scales_with_it():
    centroids, centroid_labels, queries = _setup(seed=4)
    a = (
        KNearestClusters(6)
        .fit(centroids=centroids, centroid_labels=centroid_labels, lengthscale=0.3)
        .predict_scores(queries)
    )
    b = (
        KNearestClusters(6)
        .fit(centroids=centroids * 100, centroid_labels=centroid_labels, lengthscale=0.3 * 1e4)
        .predict_scores(queries * 100)
    )
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-10)


def test_true_class_ranks_agree_with_scores():
    centroids, centroid_labels, queries = _setup(seed=5)
    knc = KNearestClusters(6).fit(
        centroids=centroids, centroid_labels=centroid_labels, lengthscale=0.4
    )
    labels = np.random.default_rng(0).choice(np.append(centroid_labels, 999), len(queries))
    ranks = knc.true_class_ranks(queries, labels)
    scores = knc.predict_scores(queries)
    for q in range(len(queries)):
        if labels[q] == 999:  # a class with no centre is wrong at every k
            assert ranks[q] == UNRANKED
            continue
        order = np.lexsort((np.arange(len(knc.classes_)), -scores[q]))
        assert ranks[q] == list(knc.classes_[order]).index(labels[q])
    np.testing.assert_array_equal(ranks == 0, knc.predict(queries) == labels)


def test_errors():
    centroids, centroid_labels, queries = _setup()
    with pytest.raises(ValueError, match="lengthscale must be given"):
        KNearestClusters().fit(centroids=centroids, centroid_labels=centroid_labels)
    with pytest.raises(ValueError, match=r"lengthscale must be > 0.0 .*got -1.0"):
        KNearestClusters().fit(centroids=centroids, centroid_labels=centroid_labels, lengthscale=-1)
    with pytest.raises(TypeError, match="index must be a fitted cluster index"):
        KNearestClusters().fit(object(), 1.0)
    with pytest.raises(ValueError, match="not both"):
        KNearestClusters().fit(
            SimpleNamespace(centroids_=centroids, centroid_labels_=centroid_labels),
            1.0,
            centroids=centroids,
        )
    with pytest.raises(ValueError, match="neighbours must be >= 1; got 0"):
        KNearestClusters(neighbours=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        KNearestClusters().predict(queries)
    knc = KNearestClusters().fit(
        centroids=centroids, centroid_labels=centroid_labels, lengthscale=1
    )
    with pytest.raises(ValueError, match="centres' dimension 4; got 3"):
        knc.predict(queries[:, :3])
    with pytest.raises(ValueError, match=r"centroid_labels must have one entry per embedding"):
        KNearestClusters().fit(
            centroids=centroids, centroid_labels=centroid_labels[:-1], lengthscale=1
        )


def test_a_class_without_centres_is_an_error_at_every_k_even_with_few_classes():
    """3 known classes, k = 5 > 3: a query of an unknown class must still count as wrong."""
    import magnetdml as md

    centroids = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], dtype=np.float32)
    knc = md.KNearestClusters(neighbours=3).fit(
        centroids=centroids, centroid_labels=np.array([0, 1, 2]), lengthscale=1.0
    )
    queries = np.array([[0.1, 0.0], [5.0, 5.0]], dtype=np.float32)
    ranks = knc.true_class_ranks(queries, np.array([0, 7]))
    assert ranks[0] == 0 and ranks[1] > 5


def test_cluster_variance_is_the_mean_squared_distance_to_the_own_centre():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 3)).astype(np.float32)
    y = np.repeat([0, 1, 2], 20)
    index = ClusterIndex(clusters_per_class=2, seed=0).fit(x, y)
    slow = (
        sum(
            float(np.sum((x[n].astype(np.float64) - index.centroids_[index.assignments_[n]]) ** 2))
            for n in range(60)
        )
        / 59
    )
    assert cluster_variance(x, index) == pytest.approx(slow, rel=1e-6)
    assert cluster_variance(
        3 * x, ClusterIndex(clusters_per_class=2, seed=0).fit(3 * x, y)
    ) == pytest.approx(9 * slow, rel=1e-5)  # a squared lengthscale


def test_cluster_variance_explains_an_unfitted_index_or_other_embeddings():
    x = np.random.default_rng(1).standard_normal((20, 3)).astype(np.float32)
    with pytest.raises(TypeError, match="fitted cluster index.*call index.fit"):
        cluster_variance(x, ClusterIndex(clusters_per_class=2))
    index = ClusterIndex(clusters_per_class=2, seed=0).fit(x, np.repeat([0, 1], 10))
    with pytest.raises(ValueError, match=r"embeddings \(10, 3\) must be the ones the index"):
        cluster_variance(x[:10], index)


# ------------------------------------------- fit_knc: the one kNC of a trained embedding


def _clusters(seed=3, classes=4, per_class=40, dim=5):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class)
    x = rng.normal(size=(labels.size, dim)) + 3 * rng.normal(size=(classes, dim))[labels]
    return x.astype(np.float32), labels


def test_fit_knc_with_a_run_index_uses_its_centres_and_sigma2_over_the_temperature():
    from magnetdml.evaluation import fit_knc, knc_lengthscale

    x, y = _clusters()
    index = ClusterIndex(clusters_per_class=2, seed=0).fit(x, y)
    knc = fit_knc(index=index, sigma2=0.9, scale=3.0, neighbours=5)
    assert knc.lengthscale_ == pytest.approx(0.3) == knc_lengthscale(0.9, 3.0)
    assert knc.index_ is index and knc.neighbours == 5
    np.testing.assert_allclose(
        knc.predict_scores(x),
        _brute_scores(x, index.centroids_, index.centroid_labels_, 0.3, 5),
        atol=1e-6,
    )


def test_fit_knc_refreshes_a_copy_of_an_index_of_older_embeddings():
    import copy

    from magnetdml.evaluation import fit_knc

    x, y = _clusters()
    index = ClusterIndex(clusters_per_class=2, seed=0).fit(x, y)
    before = index.centroids_.copy()
    moved = x * 1.5 + 0.25  # the model moved since the fit
    knc = fit_knc(moved, y, index=index, sigma2=1.0, current=False)
    fresh = copy.deepcopy(index).refresh(moved, y)
    np.testing.assert_array_equal(knc.centroids_, fresh.centroids_)
    np.testing.assert_array_equal(index.centroids_, before)  # the run's own stays as it was
    assert knc.index_ is not index and knc.lengthscale_ == 1.0


def test_fit_knc_without_a_run_index_fits_one_with_the_cluster_variance():
    from magnetdml.evaluation import fit_knc

    x, y = _clusters()
    knc = fit_knc(x, y, new_index=ClusterIndex(clusters_per_class=3, seed=1))
    index = ClusterIndex(clusters_per_class=3, seed=1).fit(x, y)
    residual = x.astype(np.float64) - index.centroids_[index.assignments_]
    assert knc.lengthscale_ == pytest.approx((residual**2).sum() / (len(x) - 1), rel=1e-6)
    np.testing.assert_array_equal(knc.centroids_, index.centroids_)
    with pytest.raises(ValueError, match="fit_knc needs a fitted index and sigma2, or new_index"):
        fit_knc(x, y, index=index)
