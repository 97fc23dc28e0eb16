"""The grouped expected-MI / AMI against scikit-learn's cell-by-cell implementation."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix, expected_mutual_information

from magnetdml.evaluation.mutual_information import (
    adjusted_mutual_info,
)
from magnetdml.evaluation.mutual_information import (
    expected_mutual_information as grouped_emi,
)


def _labelings(seed: int):
    """Random labelings: independent, correlated, unbalanced, with singletons."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    true = rng.integers(0, int(rng.integers(1, 12)), n)
    pred = rng.integers(0, int(rng.integers(1, 15)), n)
    if seed % 3 == 0:
        pred = np.where(rng.random(n) < 0.7, true, pred)
    if seed % 4 == 0:
        true = np.minimum(true, rng.integers(0, 12, n))
    return true, pred


@pytest.mark.parametrize("seed", range(60))
def test_ami_equals_scikit_learn(seed):
    true, pred = _labelings(seed)
    assert adjusted_mutual_info(true, pred) == pytest.approx(
        adjusted_mutual_info_score(true, pred), abs=1e-12
    )


@pytest.mark.parametrize("seed", range(20))
def test_expected_mi_equals_scikit_learn(seed):
    true, pred = _labelings(seed)
    sizes = [np.unique(v, return_counts=True)[1] for v in (true, pred)]
    expected = expected_mutual_information(contingency_matrix(true, pred, sparse=True), true.size)
    assert grouped_emi(*sizes) == pytest.approx(expected, rel=1e-10, abs=1e-13)


def test_many_classes_with_repeated_sizes_is_exact_and_silent():
    # 300 classes of 40 and noisy clusters: the case the grouping is for (few distinct sizes).
    rng = np.random.default_rng(1)
    true = np.repeat(np.arange(300), 40)
    pred = np.where(rng.random(true.size) < 0.8, true, rng.integers(0, 300, true.size))
    with np.errstate(all="raise"):
        ours = adjusted_mutual_info(true, pred)
    assert ours == pytest.approx(adjusted_mutual_info_score(true, pred), abs=1e-10)


@pytest.mark.parametrize(
    "true,pred,expected",
    [
        ([0, 0, 0], [1, 1, 1], 1.0),  # one group on both sides
        ([0, 1, 2], [0, 0, 0], 0.0),  # one cluster only
        ([0, 0, 0], [0, 1, 2], 0.0),  # one class only
        ([0, 0, 1, 1], [5, 5, 7, 7], 1.0),  # identical up to renaming
    ],
)
def test_edge_cases_match_scikit_learn(true, pred, expected):
    assert adjusted_mutual_info(true, pred) == pytest.approx(expected)
    assert adjusted_mutual_info_score(true, pred) == pytest.approx(expected)


def test_expected_mi_is_zero_for_a_single_group():
    assert grouped_emi([10], [3, 7]) == 0.0
