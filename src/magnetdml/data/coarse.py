"""Collapse random pairs of classes into one label (paper §4.3, hierarchy recovery, Fig. 4f).

Data that knows its hierarchy (an image tree read with leaf or deeper classes: the attribute
``"parent"``) is collapsed onto it instead: each class's parent folder is its coarse label.

Training sees only the coarse labels; the fine labels are kept as the attribute ``"fine"`` so
evaluation can ask how well the embedding recovers the classes it was never told apart.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from .base import LabelledDataset
from .splits import DatasetSplits


def pair_classes(num_classes: int, seed: int) -> np.ndarray:
    """``coarse_of (num_classes,)``: a seeded random pairing of the classes; with an odd count
    the last coarse class holds three."""
    order = np.random.default_rng(seed).permutation(num_classes)
    coarse_of = np.empty(num_classes, dtype=np.int64)
    coarse_of[order] = np.minimum(np.arange(num_classes) // 2, num_classes // 2 - 1)
    return coarse_of


def _relabel(dataset: LabelledDataset | None, coarse_of: np.ndarray) -> LabelledDataset | None:
    if dataset is None:
        return None
    coarse = copy.copy(dataset)  # shares the pixel storage; only the labels change
    coarse.attributes = {**dataset.attributes, "fine": dataset.labels}
    coarse.labels = coarse_of[dataset.labels]
    return coarse


def collapse_pairs(splits: DatasetSplits, seed: int = 0) -> DatasetSplits:
    """Return ``splits`` with every label replaced by its coarse label (its parent folder
    when the data has a ``parent`` attribute grouping the classes, else its random pair's)
    and the original label kept in ``attributes["fine"]`` of every split."""
    if splits.num_classes < 2:
        raise ValueError(
            "collapse_pairs needs at least 2 classes; the dataset "
            f"{splits.name!r} has {splits.num_classes}"
        )
    coarse_of = parent_classes(splits)
    if coarse_of is None:
        coarse_of, by = pair_classes(splits.num_classes, seed), "pairs"
        names = [
            "+".join(splits.class_names[c] for c in np.flatnonzero(coarse_of == k))
            for k in range(int(coarse_of.max()) + 1)
        ]
    else:
        by, names = "parent", list(splits.info["attribute_names"]["parent"])
    return dataclasses.replace(
        splits,
        train=_relabel(splits.train, coarse_of),
        test=_relabel(splits.test, coarse_of),
        val=_relabel(splits.val, coarse_of),
        unseen=_relabel(splits.unseen, coarse_of),
        num_classes=len(names),
        class_names=names,
        info={**splits.info, "coarse_of": coarse_of.tolist(), "coarse_by": by},
    )


def parent_classes(splits: DatasetSplits) -> np.ndarray | None:
    """``coarse_of (num_classes,)``: each class's ``parent`` attribute (an image tree's parent
    folder), or ``None`` when the data has none or it groups the classes trivially (one
    group, or one class per group)."""
    parts = [d for d in (splits.train, splits.test, splits.val, splits.unseen) if d is not None]
    if not all("parent" in d.attributes for d in parts):
        return None
    coarse_of = np.full(splits.num_classes, -1, dtype=np.int64)
    for d in parts:
        coarse_of[d.labels] = d.attributes["parent"]
    groups = len(np.unique(coarse_of[coarse_of >= 0]))
    if (coarse_of < 0).any() or not 2 <= groups < splits.num_classes:
        return None
    return coarse_of
