"""Clustering metrics: pairwise F1 against all pairs, NMI/AMI/ARI against scikit-learn."""

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score
from sklearn.metrics import normalized_mutual_info_score as nmi

from magnetdml.evaluation import clustering_scores, pairwise_f1
from magnetdml.evaluation.clustering import cluster_assignments


def _brute_f1(y, k):
    same_class = y[:, None] == y[None, :]
    same_cluster = k[:, None] == k[None, :]
    pairs = np.triu(np.ones_like(same_class), 1)
    tp = (same_class & same_cluster & pairs).sum()
    precision = tp / (same_cluster & pairs).sum()
    recall = tp / (same_class & pairs).sum()
    return 2 * precision * recall / (precision + recall)


def test_pairwise_f1_matches_all_pairs():
    rng = np.random.default_rng(0)
    for _ in range(5):
        y, k = rng.integers(0, 6, 150), rng.integers(0, 4, 150) * 7
        assert pairwise_f1(y, k) == pytest.approx(_brute_f1(y, k), rel=1e-12)


def test_pairwise_f1_edge_cases():
    y = np.array([0, 0, 1, 1, 2])
    assert pairwise_f1(y, [5, 5, 9, 9, 1]) == 1.0  # same partition, renamed clusters
    assert pairwise_f1(y, np.arange(5)) == 0.0  # all singletons: no TP pair
    assert pairwise_f1(np.arange(5), np.arange(5)) == 0.0  # no pairs at all: defined as 0


def _blobs(seed=0, classes=12, per_class=100, dim=16):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 10
    y = np.repeat(np.arange(classes), per_class)
    return (centres[y] + rng.normal(size=(len(y), dim))).astype(np.float32), y


def test_separated_blobs_score_one_like_sklearn_kmeans_plus_plus():
    x, y = _blobs()
    scores = clustering_scores(x, y, seed=0)
    assert scores == pytest.approx({"nmi": 1.0, "ami": 1.0, "ari": 1.0, "f1": 1.0})
    reference = KMeans(12, n_init=1, random_state=0).fit_predict(x)
    assert nmi(y, reference) == pytest.approx(scores["nmi"])


def test_scores_are_sklearn_scores_of_our_kmeans_assignment():
    x, y = _blobs(seed=1, dim=3)
    x = x + np.random.default_rng(1).normal(size=x.shape).astype(np.float32) * 8  # overlapping
    assignments = cluster_assignments(x, 12, seed=3)
    scores = clustering_scores(x, y, seed=3)
    assert scores["nmi"] == pytest.approx(nmi(y, assignments), abs=1e-12)
    assert scores["ami"] == pytest.approx(adjusted_mutual_info_score(y, assignments), abs=1e-12)
    assert scores["ari"] == pytest.approx(adjusted_rand_score(y, assignments), abs=1e-12)
    assert scores["f1"] == pytest.approx(_brute_f1(y, assignments), abs=1e-12)
    assert 0.0 < scores["nmi"] < 1.0


def test_evaluation_seeds_k_means_on_a_sample_of_64_points_per_centre(monkeypatch):
    from magnetdml.clustering import kmeans as km
    from magnetdml.evaluation import clustering

    seen = []
    real = km._plusplus_seeds

    def spy(points, k, seed, per_centre=km.SEED_SAMPLE):
        seen.append((len(points), k, per_centre))
        return real(points, k, seed, per_centre)

    monkeypatch.setattr(km, "_plusplus_seeds", spy)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2_000, 4)).astype(np.float32)
    y = np.repeat(np.arange(4), 500)
    clustering.clustering_scores(x, y, ("nmi",))
    assert seen == [(2_000, 4, clustering.SEED_SAMPLE)] and clustering.SEED_SAMPLE == 64
