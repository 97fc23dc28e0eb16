"""Seeded stratified hold-outs, class-disjoint splits, load_dataset and the digits default."""

import numpy as np
import pytest

from magnetdml.data import DATASETS, ArrayDataset, DataPool, load_dataset, split_pool
from magnetdml.data.splits import stratified_holdout


def pool(n_per_class=(10, 7, 3, 1, 12), test_every=4):
    labels = np.repeat(np.arange(len(n_per_class)), n_per_class)
    data = np.arange(labels.size, dtype=np.float32)[:, None]  # feature = original row id
    is_test = np.arange(labels.size) % test_every == 0
    names = [f"c{i}" for i in range(len(n_per_class))]
    return DataPool(ArrayDataset(data, labels), is_test, names, (1,))


def rows(ds):
    return ds.get_batch(range(len(ds)))[0][:, 0].long().tolist()


def test_stratified_holdout_counts_match_the_slow_rule():
    labels = np.repeat(np.arange(5), [10, 7, 3, 1, 12])
    mask = stratified_holdout(labels, 0.3, rng=np.random.default_rng(0))
    for c, n in enumerate([10, 7, 3, 1, 12]):
        expected = min(int(np.rint(0.3 * n)), n - 1)  # keep one example per class
        assert mask[labels == c].sum() == expected
    fixed = stratified_holdout(labels, count=2, rng=np.random.default_rng(0))
    assert [fixed[labels == c].sum() for c in range(5)] == [2, 2, 2, 0, 2]


def test_stratified_holdout_is_seeded():
    labels = np.repeat(np.arange(3), 50)
    a = stratified_holdout(labels, 0.2, rng=np.random.default_rng(1))
    b = stratified_holdout(labels, 0.2, rng=np.random.default_rng(1))
    c = stratified_holdout(labels, 0.2, rng=np.random.default_rng(2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_splits_partition_the_pool_and_unseen_classes_never_leak():
    p = pool()
    s = split_pool("toy", p, seed=3, val_fraction=0.25, unseen_classes=[1, "c4"])
    all_rows = rows(s.train) + rows(s.test) + rows(s.val) + rows(s.unseen)
    assert sorted(all_rows) == list(range(len(p.dataset)))  # a partition
    assert set(s.unseen.labels) == {1, 4}
    for part in (s.train, s.test, s.val):
        assert not set(part.labels) & {1, 4}
    assert all(p.is_test[r] for r in rows(s.test))
    assert not any(p.is_test[r] for r in rows(s.train) + rows(s.val))
    assert s.num_classes == 5 and s.info["unseen_class_ids"] == [1, 4]


def test_unseen_fraction_is_seeded_and_independent_of_val_fraction():
    labels = np.repeat(np.arange(20), 5)
    p = DataPool(
        ArrayDataset(np.zeros((100, 1), np.float32), labels),
        np.zeros(100, bool),
        [str(i) for i in range(20)],
        (1,),
    )
    a = split_pool("t", p, seed=0, unseen_classes=0.25)
    b = split_pool("t", p, seed=0, unseen_classes=0.25, val_fraction=0.4)
    c = split_pool("t", p, seed=1, unseen_classes=0.25)
    assert len(a.info["unseen_class_ids"]) == 5
    assert a.info["unseen_class_ids"] == b.info["unseen_class_ids"]
    assert a.info["unseen_class_ids"] != c.info["unseen_class_ids"]
    assert a.val is None and b.val is not None and c.unseen is not None


def test_split_errors_name_the_parameter():
    p = pool()
    with pytest.raises(ValueError, match="unknown class name 'zebra'"):
        split_pool("t", p, unseen_classes=["zebra"])
    with pytest.raises(ValueError, match="class id 9 out of range"):
        split_pool("t", p, unseen_classes=[9])
    with pytest.raises(ValueError, match="all 5 classes"):
        split_pool("t", p, unseen_classes=[0, 1, 2, 3, 4])
    with pytest.raises(ValueError, match="val_fraction must be <= 0.9"):
        split_pool("t", p, val_fraction=1.5)
    with pytest.raises(TypeError, match="unseen_classes must be a fraction"):
        split_pool("t", p, unseen_classes="c1")


def test_registry_lists_names_and_rejects_unknown_options():
    assert {
        "digits",
        "mnist",
        "fashion-mnist",
        "cifar10",
        "cifar100",
        "omniglot",
        "image-folder",
        "features",
    } <= set(DATASETS.names())
    with pytest.raises(ValueError, match="valid names: .*digits"):
        load_dataset("imagenet")
    with pytest.raises(TypeError, match="no option.*colour.*valid options: test_fraction"):
        load_dataset("digits", colour=True)
    with pytest.raises(ValueError, match="needs data_dir"):
        load_dataset("mnist")


def test_digits_default_dataset():
    s = load_dataset("digits", seed=0)
    assert s.input_shape == (1, 8, 8) and s.num_classes == 10
    assert len(s.train) + len(s.test) == 1797
    assert abs(len(s.test) / 1797 - 0.25) < 0.01
    x, y = s.train.get_batch(range(len(s.train)))
    assert x.dtype.is_floating_point and abs(float(x.mean())) < 0.1  # standardised
    assert abs(float(x.std()) - 1) < 0.1
    again = load_dataset("digits", seed=0)
    assert np.array_equal(again.test.labels, s.test.labels)


def grouped_pool(groups=(0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4), per_class=6):
    """12 classes in 5 groups (e.g. alphabets); the group is an example attribute."""
    labels = np.repeat(np.arange(len(groups)), per_class)
    data = np.arange(labels.size, dtype=np.float32)[:, None]
    group = np.asarray(groups)[labels]
    dataset = ArrayDataset(data, labels, attributes={"alphabet": group})
    names = [f"g{g}/c{i}" for i, g in enumerate(groups)]
    return DataPool(dataset, np.zeros(labels.size, bool), names, (1,))


def test_split_by_holds_out_whole_groups_for_test_and_validation():
    data = grouped_pool()
    for seed in range(6):
        splits = split_pool(
            "g", data, seed=seed, unseen_classes=0.4, val_classes=0.4, split_by="alphabet"
        )
        groups = {
            part: set(np.unique(getattr(splits, part).attributes["alphabet"]).tolist())
            for part in ("train", "val", "unseen")
        }
        assert len(groups["unseen"]) == 2  # round(0.4 * 5) groups, not 0.4 of the classes
        assert len(groups["val"]) == 1  # round(0.4 * 3) of the groups left
        assert not (groups["train"] & groups["unseen"]) and not (groups["train"] & groups["val"])
        assert not (groups["val"] & groups["unseen"])
        # every class of a chosen group goes with it
        group_of = np.asarray((0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4))
        held = np.unique(splits.unseen.labels)
        assert set(held.tolist()) == set(np.flatnonzero(np.isin(group_of, list(groups["unseen"]))))
        assert splits.info["split_by"] == "alphabet"
    again = split_pool("g", data, seed=5, unseen_classes=0.4, val_classes=0.4, split_by="alphabet")
    assert np.array_equal(np.unique(again.unseen.labels), held)


def test_split_by_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="split_by 'drawer' is not an attribute.*alphabet"):
        split_pool("g", grouped_pool(), unseen_classes=0.3, split_by="drawer")
    labels = np.repeat(np.arange(2), 4)
    mixed = ArrayDataset(
        np.zeros((8, 1), np.float32), labels, attributes={"alphabet": np.arange(8) % 2}
    )
    data = DataPool(mixed, np.zeros(8, bool), ["a", "b"], (1,))
    with pytest.raises(ValueError, match="class 'a' has examples in several alphabet groups"):
        split_pool("m", data, unseen_classes=0.5, split_by="alphabet")
    one_group = grouped_pool(groups=(0, 0, 0))
    with pytest.raises(ValueError, match="only 1 group"):
        split_pool("o", one_group, unseen_classes=0.5, split_by="alphabet")


@pytest.mark.parametrize("split_by", [None, "alphabet"])
def test_class_folds_cover_the_seen_classes_once_and_never_the_test_classes(split_by):
    """k-fold cross-validation over classes: the K folds' validation classes are disjoint,
    cover every seen class (each group whole with split_by), differ in size by at most one
    class (group), and leave the held-out test classes alone; the other folds train."""
    data = grouped_pool()
    group_of = np.asarray((0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4))
    folds = 3 if split_by is None else 2
    common = dict(seed=7, unseen_classes=0.25 if split_by is None else 0.2, split_by=split_by)
    held, sizes = [], []
    for fold in range(folds):
        splits = split_pool("g", data, val_folds=folds, val_fold=fold, **common)
        val, train = np.unique(splits.val.labels), np.unique(splits.train.labels)
        unseen = np.unique(splits.unseen.labels)
        assert not set(val) & set(train) and not set(val) & set(unseen)
        assert not set(train) & set(unseen)
        assert set(val) | set(train) | set(unseen) == set(range(12))
        assert splits.info["val_folds"] == folds and splits.info["val_fold"] == fold
        held.append(set(val.tolist()))
        sizes.append(val.size if split_by is None else np.unique(group_of[val]).size)
        if split_by:  # a fold holds whole groups
            assert set(val) == set(np.flatnonzero(np.isin(group_of, group_of[val])))
    assert set().union(*held) == set(range(12)) - set(unseen.tolist())
    assert sum(len(h) for h in held) == len(set().union(*held))  # disjoint
    assert max(sizes) - min(sizes) <= 1
    again = split_pool("g", data, val_folds=folds, val_fold=0, **common)
    assert set(np.unique(again.val.labels).tolist()) == held[0]  # seeded


def test_class_folds_refuse_what_they_cannot_do():
    data = pool(n_per_class=(4,) * 6)
    with pytest.raises(ValueError, match="val_folds must be >= 2"):
        split_pool("p", data, val_folds=1)
    with pytest.raises(ValueError, match="val_fold 3 must be below val_folds 3: folds are 0..2"):
        split_pool("p", data, val_folds=3, val_fold=3)
    with pytest.raises(ValueError, match="val_classes 0.3 and val_folds 3 both"):
        split_pool("p", data, val_folds=3, val_classes=0.3)
    with pytest.raises(ValueError, match="val_folds 3 and val_fraction 0.1 both"):
        split_pool("p", data, val_folds=3, val_fraction=0.1)
    with pytest.raises(ValueError, match="val_folds 7: only 6 seen classes.*at most 6 folds"):
        split_pool("p", data, val_folds=7)
    with pytest.raises(ValueError, match="fewer than two of the 3 seen classes"):
        split_pool("p", pool(n_per_class=(4,) * 3), val_folds=2)
