"""Which classes a split holds out whole: a fraction of the classes or of their groups, or one
fold of k-fold cross-validation over them (:func:`~.splits.split_pool` uses these; each takes
the random stream of its purpose)."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .._validation import check_float, check_int


def val_classes_held(
    labels: np.ndarray,
    unseen: np.ndarray,
    fraction: float,
    val_fraction: float,
    rng: np.random.Generator,
    group_of: np.ndarray | None = None,
) -> np.ndarray:
    """The class ids of a class-disjoint validation split: ``round(fraction * S)`` of the ``S``
    seen classes (at least one, leaving at least two to train on), chosen by ``rng``; with
    ``group_of`` (class id -> group id), that fraction of the seen groups, whole."""
    fraction = check_float(
        "val_classes",
        fraction,
        minimum=0.0,
        maximum=0.9,
        fix="the fraction of the seen classes held out for validation",
    )
    if not fraction:
        return np.zeros(0, np.int64)
    if val_fraction:
        raise ValueError(
            f"val_classes {fraction} and val_fraction {val_fraction} both ask for "
            "a validation split; give one (val_classes: class-disjoint, "
            "val_fraction: the same classes)"
        )
    if group_of is not None:
        return group_fraction("val_classes", fraction, group_of, unseen, rng)
    seen = np.setdiff1d(np.unique(labels), unseen)
    count = int(np.clip(np.rint(fraction * seen.size), 1, seen.size - 2))
    if count < 1:
        raise ValueError(
            f"val_classes {fraction} leaves fewer than two of the {seen.size} seen "
            "classes to train on; use more classes or val_classes 0"
        )
    return np.sort(rng.choice(seen, size=count, replace=False)).astype(np.int64)


def class_fold(
    labels: np.ndarray,
    unseen: np.ndarray,
    folds: int,
    fold: int,
    val_fraction: float,
    rng: np.random.Generator,
    group_of: np.ndarray | None = None,
) -> np.ndarray:
    """The class ids of fold ``fold`` of ``folds``: the seen classes (with ``group_of``, their
    groups, each whole), shuffled by ``rng`` and cut into ``folds`` folds whose sizes differ
    by at most one. k-fold cross-validation over classes (Musgrave et al. 2020) trains on the
    other folds and validates on this one, once for each fold."""
    folds = check_int("val_folds", folds, minimum=2, fix="the number of class folds, e.g. 4")
    fold = check_int("val_fold", fold, minimum=0, fix="a fold number below val_folds")
    if fold >= folds:
        raise ValueError(
            f"val_fold {fold} must be below val_folds {folds}: folds are 0..{folds - 1}"
        )
    if val_fraction:
        raise ValueError(
            f"val_folds {folds} and val_fraction {val_fraction} both ask for a validation "
            "split; give one (val_folds: class-disjoint folds, val_fraction: the same classes)"
        )
    seen = np.setdiff1d(np.unique(labels), unseen)
    units = seen if group_of is None else np.unique(group_of[seen])
    if units.size < folds:
        what = "classes" if group_of is None else "groups of classes"
        raise ValueError(
            f"val_folds {folds}: only {units.size} seen {what} to cut into folds; "
            f"use at most {units.size} folds"
        )
    order = rng.permutation(units)
    chosen = np.array_split(order, folds)[fold]
    held = chosen if group_of is None else seen[np.isin(group_of[seen], chosen)]
    if seen.size - held.size < 2:
        raise ValueError(
            f"val_folds {folds} leaves fewer than two of the {seen.size} seen classes to "
            "train on; use more classes or fewer folds"
        )
    return np.sort(held).astype(np.int64)


def is_fraction(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral))


def group_fraction(
    name: str, fraction: float, group_of: np.ndarray, taken: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The class ids of ``round(fraction * G)`` of the ``G`` groups with classes outside
    ``taken`` (at least one, leaving at least one), chosen by ``rng``."""
    fraction = check_float(
        name,
        fraction,
        strict_minimum=0.0,
        maximum=0.9,
        fix="with split_by, the fraction of the groups held out, e.g. 0.3",
    )
    free = np.setdiff1d(np.flatnonzero(group_of >= 0), taken)
    groups = np.unique(group_of[free])
    if groups.size < 2:
        raise ValueError(
            f"{name} {fraction} with split_by: only {groups.size} group(s) of classes left "
            "to split; split_by needs at least two groups"
        )
    count = int(np.clip(np.rint(fraction * groups.size), 1, groups.size - 1))
    chosen = rng.choice(groups, size=count, replace=False)
    return np.sort(free[np.isin(group_of[free], chosen)]).astype(np.int64)
