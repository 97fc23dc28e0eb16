"""Collapsing pairs of classes for the hierarchy-recovery experiment."""

import numpy as np
import pytest

from magnetdml.data import load_dataset
from magnetdml.data.coarse import collapse_pairs, pair_classes


@pytest.mark.parametrize("num_classes", [2, 9, 10])
def test_pairing_covers_every_class_in_groups_of_two(num_classes):
    coarse_of = pair_classes(num_classes, seed=3)
    sizes = np.bincount(coarse_of)
    assert len(sizes) == num_classes // 2
    assert sizes.sum() == num_classes and set(sizes) <= {2, 3}
    assert (sizes == 3).sum() == num_classes % 2
    assert not np.array_equal(coarse_of, pair_classes(num_classes, seed=4)) or num_classes == 2


def test_collapse_keeps_fine_labels_and_pixels():
    splits = load_dataset("digits", seed=0)
    coarse = collapse_pairs(splits, seed=0)
    assert coarse.num_classes == 5 and len(coarse.class_names) == 5
    for before, after in ((splits.train, coarse.train), (splits.test, coarse.test)):
        np.testing.assert_array_equal(after.attributes["fine"], before.labels)
        mapping = np.asarray(coarse.info["coarse_of"])
        np.testing.assert_array_equal(after.labels, mapping[before.labels])
        x_before, _ = before.get_batch([0, 5])
        x_after, y_after = after.get_batch([0, 5])
        np.testing.assert_array_equal(x_before.numpy(), x_after.numpy())
        np.testing.assert_array_equal(y_after.numpy(), after.labels[[0, 5]])
    # the original splits are untouched
    assert "fine" not in splits.train.attributes and splits.num_classes == 10
