"""Hierarchy-recovery and attribute-concentration measures against slow obvious references."""

import numpy as np
import pytest

from magnetdml import ClusterIndex
from magnetdml.experiments.analysis import (
    attribute_concentration,
    chance_concentration,
    fine_label_errors,
    majority_labels,
)


def brute_concentration(x, attr, ks, labels=None):
    """Full distance matrix, one example at a time."""
    d = ((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    out = {}
    for k in ks:
        fractions = []
        for n in range(len(x)):
            order = [
                j
                for j in np.argsort(d[n], kind="stable")
                if j != n and (labels is None or labels[j] != labels[n])
            ][:k]
            fractions.append(np.mean(attr[order] == attr[n]))
        out[k] = float(np.mean(fractions))
    return out


def blobs(seed=0, n_classes=6, per_class=15, dim=5):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    centres = rng.normal(scale=3.0, size=(n_classes, dim))
    x = centres[labels] + rng.normal(size=(len(labels), dim))
    return x.astype(np.float32), labels


@pytest.mark.parametrize("exclude", [False, True])
def test_attribute_concentration_matches_brute_force(exclude):
    x, labels = blobs()
    attr = labels % 2
    ks = [1, 3, 10, 40]
    got = attribute_concentration(
        x, attr, ks, labels=labels, exclude_same_class=exclude, batch_size=7
    )
    want = brute_concentration(x, attr, ks, labels if exclude else None)
    assert list(got) == ks
    for k in ks:
        assert got[k] == pytest.approx(want[k], abs=1e-12)


def test_attribute_concentration_with_unequal_classes_and_all_others():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 4)).astype(np.float32)
    labels = rng.integers(0, 5, size=30)
    attr = rng.integers(0, 3, size=30)
    largest = np.bincount(labels).max()
    ks = [2, 30 - largest]  # the largest k leaves the biggest class with every other row
    got = attribute_concentration(x, attr, ks, labels=labels, exclude_same_class=True)
    want = brute_concentration(x, attr, ks, labels)
    for k in ks:
        assert got[k] == pytest.approx(want[k], abs=1e-12)


def test_attribute_concentration_invariant_to_scale_and_permutation():
    x, labels = blobs(seed=1)
    attr = labels // 2
    base = attribute_concentration(x, attr, [5, 20])
    perm = np.random.default_rng(0).permutation(len(x))
    assert attribute_concentration(100 * x[perm], attr[perm], [5, 20]) == pytest.approx(base)


def test_attribute_concentration_separates_structured_from_random_embeddings():
    x, labels = blobs(seed=2, n_classes=8)
    attr = labels // 4  # classes 0-3 vs 4-7
    # put the two attribute groups far apart: cross-class neighbours share the attribute
    x[attr == 1] += 50.0
    structured = attribute_concentration(x, attr, [10], labels=labels, exclude_same_class=True)
    noise = np.random.default_rng(0).normal(size=x.shape)
    random = attribute_concentration(noise, attr, [10], labels=labels, exclude_same_class=True)
    chance = chance_concentration(attr, labels=labels, exclude_same_class=True)
    assert structured[10] == 1.0
    assert abs(random[10] - chance) < 0.15
    assert chance == pytest.approx(3 / 7)  # 3 of the 7 other classes share the attribute


def test_chance_concentration_matches_brute_force():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 4, size=25)
    attr = rng.integers(0, 3, size=25)
    for exclude in (False, True):
        want = np.mean(
            [
                np.mean(
                    [
                        attr[j] == attr[n]
                        for j in range(25)
                        if j != n and not (exclude and labels[j] == labels[n])
                    ]
                )
                for n in range(25)
            ]
        )
        got = chance_concentration(attr, labels=labels, exclude_same_class=exclude)
        assert got == pytest.approx(want)


def test_attribute_concentration_errors():
    x, labels = blobs()
    with pytest.raises(ValueError, match="exclude_same_class=True needs labels"):
        attribute_concentration(x, labels, [1], exclude_same_class=True)
    with pytest.raises(ValueError, match=r"ks must be <= 75 .*got 80"):
        attribute_concentration(x, labels, [80], labels=labels, exclude_same_class=True)
    with pytest.raises(ValueError, match=r"ks\[i\] must be >= 1; got 0"):
        attribute_concentration(x, labels, [0, 3])
    with pytest.raises(ValueError, match="attribute must have one entry per embedding"):
        attribute_concentration(x, labels[:-1], [3])
    with pytest.raises(TypeError, match="ks must be a list"):
        attribute_concentration(x, labels, 2.5)


def test_majority_labels_breaks_ties_to_smaller_label_and_marks_empty():
    assignments = np.array([0, 0, 0, 1, 1, 3])
    labels = np.array([7, 5, 7, 9, 4, 2])
    np.testing.assert_array_equal(majority_labels(assignments, labels, 4), [7, 4, -1, 2])


def hierarchy_data(seed=0):
    """4 fine classes as 4 blobs; coarse pairs (0, 1) and (2, 3)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=np.float64)
    fine = np.repeat(np.arange(4), 40)
    test_fine = np.repeat(np.arange(4), 10)
    train = (centres[fine] + rng.normal(size=(len(fine), 2))).astype(np.float32)
    test = (centres[test_fine] + rng.normal(size=(len(test_fine), 2))).astype(np.float32)
    return train, fine, test, test_fine, fine // 2


def brute_soft_vote(query, points, point_labels, variance, k):
    d = ((points - query) ** 2).sum(1)
    nearest = np.argsort(d, kind="stable")[:k]
    scores = {}
    for j in nearest:
        scores[point_labels[j]] = scores.get(point_labels[j], 0.0) + np.exp(-d[j] / (2 * variance))
    return sorted(scores, key=lambda c: (-scores[c], c))


def test_fine_label_errors_knc_against_brute_force():
    train, fine, test, test_fine, coarse = hierarchy_data()
    index = ClusterIndex(clusters_per_class=2, seed=0).fit(train, coarse)
    out = fine_label_errors(test, test_fine, train, fine, k=3, index=index, lengthscale=2.0)
    # brute force: name clusters by majority fine label with a Python loop, vote by hand
    names = []
    for c in range(len(index.centroids_)):
        members = fine[index.assignments_ == c]
        names.append(np.bincount(members).argmax())
    names = np.array(names)
    ranks = []
    for q, truth in zip(test, test_fine, strict=True):
        order = brute_soft_vote(q, index.centroids_, names, 2.0, 3)
        ranks.append(order.index(truth) if truth in order else len(set(names)))
    ranks = np.array(ranks)
    assert out["knc_error_at_1"] == pytest.approx(np.mean(ranks >= 1))
    assert out["knc_error_at_5"] == pytest.approx(np.mean(ranks >= 5))
    assert out["cluster_purity"] == pytest.approx(np.mean(names[index.assignments_] == fine))
    # well-separated blobs: 2 clusters per pair recover the fine classes exactly
    assert out["knc_error_at_1"] == 0.0 and out["cluster_purity"] == 1.0
    assert out["knn_error_at_1"] == 0.0


def test_fine_label_errors_one_cluster_per_coarse_class_loses_half_the_fine_classes():
    train, fine, test, test_fine, coarse = hierarchy_data(seed=1)
    index = ClusterIndex(clusters_per_class=1, seed=0).fit(train, coarse)
    out = fine_label_errors(test, test_fine, train, fine, k=8, index=index, lengthscale=1.0)
    assert out["knc_error_at_1"] >= 0.5  # one fine class per pair has no centre
    assert out["knc_error_at_5"] >= 0.5  # ... and so is never ranked at all
    assert out["cluster_purity"] == pytest.approx(0.5)


def test_fine_label_errors_knn_is_evaluate_on_fine_labels():
    from magnetdml.evaluation import evaluate

    rng = np.random.default_rng(5)
    train, test = rng.normal(size=(60, 3)), rng.normal(size=(20, 3))
    fine, test_fine = rng.integers(0, 6, 60), rng.integers(0, 6, 20)
    out = fine_label_errors(test, test_fine, train, fine, k=10)
    want = evaluate(
        test,
        test_fine,
        reference=train,
        reference_labels=fine,
        metrics=["error_at_1", "error_at_5"],
        k=10,
    )
    assert out == {"knn_error_at_1": want["error_at_1"], "knn_error_at_5": want["error_at_5"]}


def test_fine_label_errors_errors():
    train, fine, test, test_fine, coarse = hierarchy_data()
    index = ClusterIndex(clusters_per_class=2, seed=0).fit(train, coarse)
    with pytest.raises(ValueError, match="lengthscale must be given with index"):
        fine_label_errors(test, test_fine, train, fine, index=index)
    with pytest.raises(ValueError, match="pass index= too"):
        fine_label_errors(test, test_fine, train, fine, lengthscale=1.0)
    with pytest.raises(ValueError, match=r"one entry per training row \(80\).*got 160"):
        fine_label_errors(test, test_fine, train[:80], fine[:80], index=index, lengthscale=1.0)
    with pytest.raises(TypeError, match="fitted cluster index"):
        fine_label_errors(test, test_fine, train, fine, index=object(), lengthscale=1.0)
    with pytest.raises(ValueError, match="train_emb must have test_emb's dimension 2; got 3"):
        fine_label_errors(test, test_fine, np.zeros((5, 3)), np.zeros(5, int))
