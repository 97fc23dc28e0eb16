"""Score an embedding against the levels of a user's tree above its classes (paper §4.2-4.3).

An image folder read with leaf (or deeper) classes keeps the folders above each class as
attributes (``parent``, ``level_n``: see :mod:`magnetdml.data.image_tree`). For each such
attribute ``a`` of the examples ``(N,)``, :func:`level_metrics` reports

* ``nmi`` and ``f1``: k-means++ of the embeddings into as many clusters as ``a`` has groups,
  against ``a`` (do whole groups of classes come out as clusters? seed 003's measures);
* ``concentration_at_k``: the mean fraction of each example's ``k`` nearest neighbours *of
  other classes* that share its ``a`` (paper §4.2's attribute concentration: do similar classes
  sit close together?), with ``chance_concentration`` the value a random embedding expects.

``"fine"`` (the leaf class of a run trained with ``data.collapse_pairs`` on its parent
folders: paper §4.3's hierarchy recovery) is scored the same way, except that its
concentration counts every neighbour (the fine classes split the trained ones).
"""

from __future__ import annotations

import numpy as np

from ..evaluation import evaluate
from .analysis import attribute_concentration, chance_concentration

KS = (1, 4, 16)


def tree_levels(dataset, info: dict) -> dict[str, np.ndarray]:
    """The attributes of ``dataset`` that are tree levels (``info["attribute_names"]``), and
    ``"fine"`` when its labels are parent folders (``data.collapse_pairs`` on a tree)."""
    names = set(info.get("attribute_names", {}))
    if info.get("coarse_by") == "parent":
        names.add("fine")
    return {k: v for k, v in dataset.attributes.items() if k in names}


def level_metrics(
    embeddings: np.ndarray, labels: np.ndarray, levels: dict[str, np.ndarray], *, seed: int = 0
) -> dict[str, dict[str, float]]:
    """``{level: {metric: value}}`` for every level with 2 or more groups (module docstring).
    ``embeddings (N, E)``, ``labels (N,)`` the classes, ``levels`` name -> ``(N,)``."""
    out: dict[str, dict[str, float]] = {}
    for name, values in levels.items():
        values = np.asarray(values)
        if len(np.unique(values)) < 2 or len(values) < 3:
            continue
        scores = evaluate(embeddings, values, metrics=["nmi", "f1"], seed=seed)
        # a level groups whole classes: a class's own members share it trivially, so only
        # neighbours of other classes count; "fine" splits the trained (coarse) classes:
        # there every neighbour counts (does the embedding keep the fine classes apart?)
        exclude = name != "fine"
        largest = int(np.unique(labels, return_counts=True)[1].max()) if exclude else 1
        ks = [k for k in KS if k <= len(values) - largest]
        if ks:
            curve = attribute_concentration(
                embeddings, values, ks, labels=labels, exclude_same_class=exclude
            )
            scores.update({f"concentration_at_{k}": v for k, v in curve.items()})
            scores["chance_concentration"] = chance_concentration(
                values, labels=labels, exclude_same_class=exclude
            )
        out[name] = scores
    return out
