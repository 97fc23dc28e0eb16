"""Seeded splits: stratified hold-outs and class-disjoint (unseen-class) splits.

A loader returns a :class:`DataPool`: every example of the dataset in one
:class:`~magnetdml.data.base.LabelledDataset` plus the mask of its original test split.
:func:`split_pool` then cuts it into the :class:`DatasetSplits` the training loop uses:

* ``unseen``: every example (original train *and* test) of the held-out classes, which never
  reach train, test or val (the class-disjoint protocol of seed 003 and of CUB/Cars retrieval);
* ``test``: the original test examples of the seen classes;
* ``val``: the dataset's own validation examples (``DataPool.is_val``, e.g. from a CSV) plus a
  seeded stratified ``val_fraction`` of the remaining seen training examples; or, with
  ``val_classes``, every example of a seeded fraction of the seen classes (a class-disjoint
  validation split: the tuning split of the unseen-class protocol, Musgrave et al. 2020); or,
  with ``val_folds = K``, fold ``val_fold`` of the seen classes cut into ``K`` seeded folds
  (k-fold cross-validation over classes: each fold validates once, the others train);
* ``train``: the rest.

Each random choice draws from its own stream ``numpy.random.default_rng([seed, purpose])``, so
changing ``val_fraction`` does not change which classes are unseen.

With ``split_by`` (a class-level attribute, e.g. Omniglot's ``alphabet`` or an image tree's
``parent``), the fractions ``unseen_classes`` and ``val_classes`` (and the folds) count
groups instead of classes, and every class of a chosen group goes together: test classes then
share no group with the training classes (train on some alphabets, test on others).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validation import check_float, check_int
from .base import LabelledDataset
from .class_holdout import class_fold, group_fraction, is_fraction, val_classes_held

# Independent random streams per purpose (see module docstring).
STREAM_UNSEEN, STREAM_VAL, STREAM_TEST, STREAM_VAL_CLASSES, STREAM_VAL_FOLDS = 1, 2, 3, 4, 5


@dataclass
class DatasetSplits:
    """The splits of one dataset; labels are class ids of the whole dataset (0..num_classes-1).

    ``test`` holds held-out examples of the training classes; ``unseen`` the examples of classes
    never trained on (``None`` without ``unseen_classes``); ``val`` a validation carve of train
    (``None`` when it would be empty). ``info`` records how the data was loaded.
    """

    name: str
    train: LabelledDataset
    test: LabelledDataset
    val: LabelledDataset | None
    unseen: LabelledDataset | None
    num_classes: int
    input_shape: tuple[int, ...]
    class_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataPool:
    """What a loader returns: all examples, which ones are test, and the forced-unseen classes."""

    dataset: LabelledDataset
    is_test: np.ndarray  # (N,) bool: the dataset's own test split
    class_names: list[str]
    input_shape: tuple[int, ...]
    unseen: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # class ids
    is_val: np.ndarray | None = None  # (N,) bool: the dataset's own validation split
    info: dict[str, Any] = field(default_factory=dict)


def stratified_holdout(
    labels: np.ndarray,
    fraction: float | None = None,
    *,
    count: int | None = None,
    rng: np.random.Generator,
) -> np.ndarray:
    """Boolean mask (N,) holding out ``round(fraction * n_c)`` (or ``count``) examples per class.

    Vectorised: a random key per example, sorted within each class; the lowest ranks are held
    out. A class keeps at least one example on the kept side.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = labels.shape[0]
    if n == 0:
        return np.zeros(0, dtype=bool)
    order = np.lexsort((rng.random(n), labels))  # by class, random within class
    classes, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    rank = np.arange(n) - np.repeat(starts, counts)  # rank within class, in sorted order
    want = (
        np.full(classes.shape, count)
        if count is not None
        else np.rint(fraction * counts).astype(np.int64)
    )
    want = np.minimum(want, counts - 1)
    mask = np.zeros(n, dtype=bool)
    mask[order] = rank < np.repeat(want, counts)
    return mask


def resolve_classes(
    name: str, value: Any, class_names: list[str], rng: np.random.Generator
) -> np.ndarray:
    """Turn a fraction in (0, 1) or a list of class ids / names into sorted class ids."""
    num = len(class_names)
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)):
        frac = check_float(
            name,
            value,
            strict_minimum=0.0,
            maximum=1.0,
            fix="a fraction of the classes, or a list of class ids or names",
        )
        k = int(np.clip(np.rint(frac * num), 1, num - 1))
        return np.sort(rng.choice(num, size=k, replace=False)).astype(np.int64)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(
            f"{name} must be a fraction in (0, 1) or a list of class ids or names; got {value!r}"
        )
    lookup = {c: i for i, c in enumerate(class_names)}
    ids = []
    for item in value:
        if isinstance(item, str):
            if item not in lookup:
                sample = ", ".join(class_names[:8]) + (", ..." if num > 8 else "")
                raise ValueError(f"{name}: unknown class name {item!r}; valid names: {sample}")
            ids.append(lookup[item])
        else:
            cid = check_int(f"{name} entry", item, minimum=0)
            if cid >= num:
                raise ValueError(
                    f"{name}: class id {cid} out of range; the dataset has {num} "
                    f"classes (ids 0..{num - 1})"
                )
            ids.append(cid)
    return np.unique(np.asarray(ids, dtype=np.int64))


def split_pool(
    name: str,
    pool: DataPool,
    *,
    seed: int = 0,
    val_fraction: float = 0.0,
    unseen_classes: Any = None,
    val_classes: float = 0.0,
    split_by: str | None = None,
    val_folds: int = 0,
    val_fold: int = 0,
) -> DatasetSplits:
    """Cut ``pool`` into train / test / val / unseen (see the module docstring)."""
    seed = check_int("seed", seed, minimum=0)
    val_fraction = check_float(
        "val_fraction",
        val_fraction,
        minimum=0.0,
        maximum=0.9,
        fix="the fraction of training examples per class kept for validation, e.g. 0.1",
    )
    labels = pool.dataset.labels
    num_classes = len(pool.class_names)
    unseen = np.asarray(pool.unseen, dtype=np.int64)
    group_of = class_groups(pool, split_by) if split_by else None
    if unseen_classes is not None:
        rng = np.random.default_rng([seed, STREAM_UNSEEN])
        if group_of is not None and is_fraction(unseen_classes):
            chosen = group_fraction("unseen_classes", unseen_classes, group_of, unseen, rng)
        else:
            chosen = resolve_classes("unseen_classes", unseen_classes, pool.class_names, rng)
        unseen = np.union1d(unseen, chosen)
    if unseen.size >= num_classes:
        raise ValueError(
            f"unseen_classes would hold out all {num_classes} classes; leave at "
            "least one class for training"
        )
    is_unseen = np.isin(labels, unseen)
    rng = np.random.default_rng([seed, STREAM_VAL_CLASSES])
    held = val_classes_held(labels, unseen, val_classes, val_fraction, rng, group_of)
    if val_folds:
        if held.size:
            raise ValueError(
                f"val_classes {val_classes} and val_folds {val_folds} both choose the "
                "validation classes; give one (val_folds: k-fold cross-validation)"
            )
        rng = np.random.default_rng([seed, STREAM_VAL_FOLDS])
        held = class_fold(labels, unseen, val_folds, val_fold, val_fraction, rng, group_of)
    is_held = np.isin(labels, held)
    own_val = np.zeros(labels.shape, dtype=bool) if pool.is_val is None else pool.is_val
    seen_train = np.flatnonzero(~is_unseen & ~is_held & ~pool.is_test & ~own_val)
    is_val = np.zeros(seen_train.shape, dtype=bool)
    if val_fraction > 0:
        is_val = stratified_holdout(
            labels[seen_train], val_fraction, rng=np.random.default_rng([seed, STREAM_VAL])
        )
    val_rows = np.union1d(seen_train[is_val], np.flatnonzero(~is_unseen & ~is_held & own_val))
    val_rows = np.union1d(val_rows, np.flatnonzero(is_held))
    ds = pool.dataset
    info = dict(
        pool.info,
        seed=seed,
        val_fraction=val_fraction,
        unseen_class_ids=unseen.tolist(),
        val_class_ids=held.tolist(),
        **({"val_folds": val_folds, "val_fold": val_fold} if val_folds else {}),
        **({"split_by": split_by} if split_by else {}),
    )
    return DatasetSplits(
        name=name,
        train=ds.subset(seen_train[~is_val]),
        test=ds.subset(np.flatnonzero(~is_unseen & ~is_held & pool.is_test)),
        val=ds.subset(val_rows) if val_rows.size else None,
        unseen=ds.subset(np.flatnonzero(is_unseen)) if unseen.size else None,
        num_classes=num_classes,
        input_shape=tuple(pool.input_shape),
        class_names=list(pool.class_names),
        info=info,
    )


def class_groups(pool: DataPool, attribute: str) -> np.ndarray:
    """``(num_classes,)`` group id of each class: the value of the example attribute
    ``attribute`` that all of the class's examples share (-1 for a class without examples)."""
    attributes = pool.dataset.attributes
    if attribute not in attributes:
        raise ValueError(
            f"split_by {attribute!r} is not an attribute of this dataset; its attributes: "
            f"{', '.join(sorted(attributes)) or '(none)'}"
        )
    labels = pool.dataset.labels
    values = np.asarray(attributes[attribute], dtype=np.int64)
    group_of = np.full(len(pool.class_names), -1, dtype=np.int64)
    group_of[labels] = values
    mixed = np.flatnonzero(group_of[labels] != values)
    if mixed.size:
        name = pool.class_names[labels[mixed[0]]]
        raise ValueError(
            f"split_by {attribute!r}: class {name!r} has examples in several {attribute} "
            f"groups; split_by needs an attribute of the classes (one value per class)"
        )
    return group_of
