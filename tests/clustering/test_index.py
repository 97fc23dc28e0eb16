"""ClusterIndex: per-class k-means++ / Ward clusters, CSR members, nearest impostors."""

import numpy as np
import pytest
import torch

from magnetdml.clustering import ClusterIndex
from magnetdml.clustering.agglomerative import ward_clusters
from magnetdml.clustering.kmeans import kmeans, lloyd_torch


def blobs(n_classes=3, blobs_per_class=4, per_blob=30, dim=16, seed=0, spread=0.05):
    """Well-separated blobs; returns points, class labels and the true blob of each point."""
    rng = np.random.default_rng(seed)
    n_blobs = n_classes * blobs_per_class
    centres = rng.standard_normal((n_blobs, dim)) * 10
    blob = np.repeat(np.arange(n_blobs), per_blob)
    points = centres[blob] + spread * rng.standard_normal((blob.size, dim))
    return points.astype(np.float32), blob // blobs_per_class, blob


def same_partition(a, b):
    """True when the two labelings group the points identically (up to renaming)."""
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_plus_plus_recovers_well_separated_blobs_exactly(seed):
    x, y, blob = blobs(seed=seed)
    index = ClusterIndex(clusters_per_class=4, seed=seed).fit(x, y)
    assert same_partition(index.assignments_, blob)
    assert index.n_clusters_ == 12
    np.testing.assert_array_equal(index.clusters_per_class_, [4, 4, 4])


def test_fitted_attributes_are_consistent():
    x, y, _ = blobs()
    index = ClusterIndex(clusters_per_class=4).fit(torch.from_numpy(x), torch.from_numpy(y))
    assert index.centroids_.dtype == np.float32 and index.centroids_.shape == (12, 16)
    assert index.assignments_.dtype == np.int64 and index.centroid_labels_.dtype == np.int64
    np.testing.assert_array_equal(index.centroid_labels_[index.assignments_], y)
    np.testing.assert_array_equal(index.classes_, [0, 1, 2])
    assert index.cluster_sizes_.sum() == len(y) and index.n_refreshes_ == 0
    for c in range(index.n_clusters_):
        np.testing.assert_array_equal(index.members(c), np.flatnonzero(index.assignments_ == c))
        # each centre is the mean of its members after converged Lloyd steps
        np.testing.assert_allclose(index.centroids_[c], x[index.members(c)].mean(0), atol=1e-4)


def test_small_classes_get_fewer_clusters_and_no_cluster_is_empty():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40 + 3 + 1 + 5, 8)).astype(np.float32)
    x[44:] = 7.0  # a class of five identical points: k-means can leave clusters empty
    y = np.array([5] * 40 + [7] * 3 + [9] + [11] * 5)
    index = ClusterIndex(clusters_per_class=8).fit(x, y)
    np.testing.assert_array_equal(index.classes_, [5, 7, 9, 11])
    assert index.clusters_per_class_[:3].tolist() == [8, 3, 1]
    assert (index.cluster_sizes_[8:12] == 1).all()  # k = N: one cluster per point
    assert 1 <= index.clusters_per_class_[3] <= 5
    assert (index.cluster_sizes_ > 0).all()
    capped = ClusterIndex(clusters_per_class=8, max_clusters_per_class=2).fit(x, y)
    assert capped.clusters_per_class_.max() == 2


def test_nearest_impostors_match_brute_force_and_never_share_the_class():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((600, 6)).astype(np.float32)
    y = rng.integers(0, 7, 600)
    index = ClusterIndex(clusters_per_class=5, seed=3).fit(x, y)
    for c in range(index.n_clusters_):
        others = [
            j
            for j in range(index.n_clusters_)
            if index.centroid_labels_[j] != index.centroid_labels_[c]
        ]
        dist = [float(((index.centroids_[j] - index.centroids_[c]) ** 2).sum()) for j in others]
        expected = [others[i] for i in np.argsort(dist, kind="stable")]
        m = len(others) if c % 2 else 11
        got = index.nearest_impostors(c, m)
        assert got.tolist() == expected[:m]
        assert (index.centroid_labels_[got] != index.centroid_labels_[c]).all()


def test_nearest_impostors_rejects_too_many():
    x, y, _ = blobs()
    index = ClusterIndex(clusters_per_class=4).fit(x, y)
    assert index.n_impostors(0) == 8
    with pytest.raises(ValueError, match=r"m must be <= the 8 clusters.*got 9"):
        index.nearest_impostors(0, 9)
    with pytest.raises(ValueError, match="cluster_id must be < n_clusters_"):
        index.members(12)


def test_refresh_warm_starts_and_keeps_cluster_ids_stable():
    x, y, _ = blobs(seed=4)
    index = ClusterIndex(clusters_per_class=4, seed=4).fit(x, y)
    before = index.assignments_.copy()
    noise = 0.01 * np.random.default_rng(5).standard_normal(x.shape).astype(np.float32)
    index.refresh(x + noise, y)
    assert index.n_refreshes_ == 1
    np.testing.assert_array_equal(index.assignments_, before)
    # a cold fit with another seed finds the same blobs but in another order
    cold = ClusterIndex(clusters_per_class=4, seed=5).fit(x + noise, y)
    assert same_partition(cold.assignments_, before)
    assert not np.array_equal(cold.assignments_, before)


def test_fit_is_deterministic_for_a_seed():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 4)).astype(np.float32)
    y = rng.integers(0, 3, 300)
    a = ClusterIndex(clusters_per_class=6, seed=1).fit(x, y)
    b = ClusterIndex(clusters_per_class=6, seed=1).fit(x, y)
    np.testing.assert_array_equal(a.assignments_, b.assignments_)
    np.testing.assert_array_equal(a.centroids_, b.centroids_)


def structured_classes(seed=0):
    """Class 0: one blob; class 1: two far blobs; class 2: three far blobs."""
    rng = np.random.default_rng(seed)
    parts, labels = [], []
    for label, n_blobs in enumerate([1, 2, 3]):
        for _ in range(n_blobs):
            centre = rng.standard_normal(8) * 20
            parts.append(centre + rng.standard_normal((60, 8)))
            labels += [label] * 60
    return np.concatenate(parts).astype(np.float32), np.array(labels)


def test_agglomerative_count_varies_by_class_and_survives_rescaling():
    x, y = structured_classes()
    index = ClusterIndex(method="agglomerative", distance_threshold=0.5).fit(x, y)
    np.testing.assert_array_equal(index.clusters_per_class_, [1, 2, 3])
    scaled = ClusterIndex(method="agglomerative", distance_threshold=0.5).fit(x * 100, y)
    np.testing.assert_array_equal(scaled.clusters_per_class_, index.clusters_per_class_)
    np.testing.assert_array_equal(scaled.assignments_, index.assignments_)
    capped = ClusterIndex(
        method="agglomerative", distance_threshold=0.5, max_clusters_per_class=2
    ).fit(x, y)
    np.testing.assert_array_equal(capped.clusters_per_class_, [1, 2, 2])
    fine = ClusterIndex(method="agglomerative", distance_threshold=0.01).fit(x, y)
    assert (fine.clusters_per_class_ > index.clusters_per_class_).all()


def test_agglomerative_subsample_assigns_the_rest_to_the_nearest_centre():
    x, _, blob = blobs(n_classes=1, blobs_per_class=3, per_blob=100, seed=6)
    centres, assign = ward_clusters(
        x,
        distance_threshold=1.0,
        spread=1.0,
        max_clusters=None,
        rng=np.random.default_rng(0),
        max_points=50,
    )
    assert centres.shape == (3, 16)
    assert same_partition(assign, blob)


def test_torch_lloyd_matches_faiss_from_the_same_init():
    x, _, blob = blobs(n_classes=1, blobs_per_class=6, per_blob=40, seed=7, spread=0.5)
    init = x[np.random.default_rng(0).choice(len(x), 6, replace=False)]
    ref = kmeans(x, 6, init=init, max_iter=10)
    got = lloyd_torch(x, init, max_iter=10)
    np.testing.assert_array_equal(got.assignments, ref.assignments)
    np.testing.assert_allclose(got.centroids, ref.centroids, atol=1e-4)
    assert got.inertia == pytest.approx(ref.inertia, rel=1e-4)


def test_state_dict_round_trip():
    x, y, _ = blobs(seed=8)
    index = ClusterIndex(clusters_per_class=3, seed=2).fit(x, y)
    index.refresh(x, y)
    restored = ClusterIndex().load_state_dict(index.state_dict())
    assert restored.get_params() == index.get_params()
    for name in (
        "centroids_",
        "centroid_labels_",
        "assignments_",
        "classes_",
        "clusters_per_class_",
        "cluster_sizes_",
    ):
        np.testing.assert_array_equal(getattr(restored, name), getattr(index, name))
    assert restored.n_refreshes_ == 1
    np.testing.assert_array_equal(restored.nearest_impostors(0, 5), index.nearest_impostors(0, 5))
    np.testing.assert_array_equal(
        restored.refresh(x, y).assignments_, index.refresh(x, y).assignments_
    )
    gpu_state = index.state_dict()
    gpu_state["params"]["device"] = "cuda"  # fitted on a GPU, evaluated on a CPU machine
    loaded = ClusterIndex().load_state_dict(gpu_state)
    np.testing.assert_array_equal(loaded.centroids_, index.centroids_)


def test_input_and_parameter_errors():
    x, y, _ = blobs()
    with pytest.raises(ValueError, match="labels must have one entry per embedding"):
        ClusterIndex().fit(x, y[:-1])
    bad = x.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="embeddings must be finite"):
        ClusterIndex().fit(bad, y)
    with pytest.raises(ValueError, match="clusters_per_class must be >= 1; got 0"):
        ClusterIndex(clusters_per_class=0).fit(x, y)
    with pytest.raises(ValueError, match="method must be one of 'kmeans', 'agglomerative'"):
        ClusterIndex(method="spectral").fit(x, y)
    with pytest.raises(ValueError, match="distance_threshold must be > 0"):
        ClusterIndex(method="agglomerative", distance_threshold=0).fit(x, y)
    with pytest.raises(ValueError, match="not fitted yet; call fit"):
        ClusterIndex().nearest_impostors(0, 1)
    with pytest.raises(ValueError, match="keep the dimension"):
        ClusterIndex(clusters_per_class=2).fit(x, y).refresh(x[:, :4], y)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU; use device='cpu'"):
            ClusterIndex(device="cuda").fit(x, y)
