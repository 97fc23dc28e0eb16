"""Soft kNN and majority kNN against brute force; the scale-invariant default lengthscale."""

import numpy as np
import pytest

from magnetdml.evaluation import SoftKNN, estimate_variance
from magnetdml.evaluation._scores import UNRANKED


def _data(seed=0, n=90, dim=5, classes=4):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n) * 2 + 1  # labels 1, 3, 5, 7
    x = (rng.normal(size=(n, dim)) + labels[:, None] * 0.4).astype(np.float32)
    return x, labels


def _brute(queries, reference, reference_labels, L, variance, exclude_self):
    d = ((queries[:, None, :].astype(np.float64) - reference[None]) ** 2).sum(-1)
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    classes = np.unique(reference_labels)
    scores = np.zeros((len(queries), len(classes)))
    for q in range(len(queries)):
        for l in np.argsort(d[q])[:L]:
            w = 1.0 if variance is None else np.exp(-d[q, l] / (2 * variance))
            scores[q, np.searchsorted(classes, reference_labels[l])] += w
    return scores / scores.sum(axis=1, keepdims=True)


def _brute_variance(x, labels):
    x = x.astype(np.float64)
    total = sum(((x[labels == c] - x[labels == c].mean(0)) ** 2).sum() for c in np.unique(labels))
    return total / (len(x) - 1)


def test_estimate_variance_matches_definition_and_scales_quadratically():
    x, labels = _data()
    assert estimate_variance(x, labels) == pytest.approx(_brute_variance(x, labels), rel=1e-6)
    assert estimate_variance(x * 10, labels, batch_size=7) == pytest.approx(
        100 * _brute_variance(x, labels), rel=1e-5
    )
    # Every class a single point: falls back to the total variance; identical points: 1.0.
    assert estimate_variance(x, np.arange(len(x))) == pytest.approx(
        _brute_variance(x, np.zeros(len(x), int)), rel=1e-6
    )
    assert estimate_variance(np.ones((4, 2)), [0, 0, 1, 1]) == 1.0


@pytest.mark.parametrize("vote", ["soft", "majority"])
@pytest.mark.parametrize("L", [1, 7, 500])
def test_matches_brute_force_with_separate_reference_and_leave_one_out(vote, L):
    x, labels = _data()
    queries, _ = _data(seed=1, n=30)
    model = SoftKNN(neighbours=L, vote=vote, batch_size=8).fit(x, labels)
    variance = None if vote == "majority" else _brute_variance(x, labels)
    expected = _brute(queries, x, labels, min(L, 90), variance, False)
    np.testing.assert_allclose(model.predict_scores(queries), expected, rtol=1e-4, atol=1e-9)
    expected = _brute(x, x, labels, min(L, 89), variance, True)
    np.testing.assert_allclose(model.predict_scores(), expected, rtol=1e-4, atol=1e-9)
    np.testing.assert_array_equal(model.predict(), model.classes_[expected.argmax(1)])


def test_default_lengthscale_makes_predictions_scale_invariant():
    x, labels = _data(seed=2)
    a = SoftKNN(neighbours=10).fit(x, labels).predict_scores()
    b = SoftKNN(neighbours=10).fit(x * 1000, labels).predict_scores()
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-9)


def test_explicit_variance_is_used():
    x, labels = _data(seed=3)
    model = SoftKNN(neighbours=9, variance=0.05).fit(x, labels)
    assert model.variance_ == 0.05
    np.testing.assert_allclose(
        model.predict_scores(), _brute(x, x, labels, 9, 0.05, True), rtol=1e-4, atol=1e-9
    )


def test_true_class_ranks_zero_iff_correct():
    x, labels = _data(seed=4)
    model = SoftKNN(neighbours=6).fit(x, labels)
    ranks = model.true_class_ranks(None, labels)
    np.testing.assert_array_equal(ranks == 0, model.predict() == labels)
    queries = x[:5]
    assert (model.true_class_ranks(queries, [42] * 5) == UNRANKED).all()


def test_errors():
    x, labels = _data()
    with pytest.raises(ValueError, match="vote must be one of 'soft', 'majority'; got 'mode'"):
        SoftKNN(vote="mode")
    with pytest.raises(ValueError, match=r"variance must be > 0.0 \(sigma\^2 .*got 0.0"):
        SoftKNN(variance=0.0)
    with pytest.raises(RuntimeError, match="not fitted"):
        SoftKNN().predict(x)
    with pytest.raises(ValueError, match="reference_labels must have one entry per embedding"):
        SoftKNN().fit(x, labels[:-1])
    with pytest.raises(ValueError, match="needs >= 2 reference examples"):
        SoftKNN().fit(x[:1], labels[:1]).predict()
    with pytest.raises(ValueError, match="embeddings must hold >= 2 rows to estimate a variance"):
        estimate_variance(x[:1], labels[:1])
    with pytest.raises(ValueError, match="reference's dimension 5; got 2"):
        SoftKNN().fit(x, labels).predict(x[:, :2])
