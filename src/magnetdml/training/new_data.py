"""Another dataset (or folder) read the way a trained run read its own.

:func:`load_like_run` loads ``dataset`` / ``data_dir`` with the run's split seed and, for the
run's own kind of data, the run's *reading* options (an image folder's ``class_level``, input
``size`` and ``channels``; Omniglot's ``size`` and ``invert``) under the ones given, so that a
new folder of photos is cut into classes, resized and coloured exactly as the training folder
was. :class:`Concatenated` joins its parts into one dataset for the inference commands.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..data.base import LabelledDataset, as_index_tensor
from ..data.image_tree import options_text
from .setup import load_splits

#: Loader options that say how data is read (not which examples are used): inherited from the
#: run when new data of its dataset kind is loaded.
READING_OPTIONS = ("class_level", "size", "channels", "invert")


def load_like_run(run, dataset: str, data_dir: str | None, options: str = ""):
    """``DatasetSplits`` of ``dataset`` (no val or unseen carve) read like ``run``'s data;
    raises when its inputs' shape differs from the run's."""
    from .config import parse_options

    given = parse_options("--data-options", options, "{size: 28}")
    if dataset == run.config.data.name:
        inherited = {
            k: v for k, v in run.config.data.loader_options().items() if k in READING_OPTIONS
        }
        given = {**inherited, **given}
    data = dataclasses.replace(
        run.config.data,
        name=dataset,
        data_dir=data_dir,
        options=options_text(given) if given else "",
        val_fraction=0.0,
        unseen_classes=0.0,
        collapse_pairs=False,
    )
    other = load_splits(dataclasses.replace(run.config, data=data).validate())
    if tuple(other.input_shape) != tuple(run.splits.input_shape):
        raise ValueError(
            f"{dataset!r} has inputs {tuple(other.input_shape)} but the run was "
            f"trained on {tuple(run.splits.input_shape)}; pass loader options "
            "that match (e.g. --data-options '{size: 28}')"
        )
    return other


class Concatenated(LabelledDataset):
    """The examples of ``parts`` (datasets of one kind of input) one after another."""

    def __init__(self, parts: Sequence[LabelledDataset]) -> None:
        self.parts = [p for p in parts if p is not None and len(p)]
        if not self.parts:
            raise ValueError("the dataset has no examples to run the model on")
        self.labels = np.concatenate([p.labels for p in self.parts])
        keys = set.intersection(*(set(p.attributes) for p in self.parts))
        self.attributes = {
            k: np.concatenate([p.attributes[k] for p in self.parts]) for k in sorted(keys)
        }
        self._offsets = np.cumsum([0] + [len(p) for p in self.parts])
        self.pixel_max = getattr(self.parts[0], "pixel_max", 255.0)

    def _locate(self, indices: Any):
        idx = as_index_tensor(indices).numpy()
        part = np.searchsorted(self._offsets, idx, side="right") - 1
        return idx, part

    def _gather(self, indices: Any, read) -> list:
        idx, part = self._locate(indices)
        out: list = [None] * len(idx)
        for p in np.unique(part):
            rows = np.flatnonzero(part == p)
            values = read(self.parts[p], idx[rows] - self._offsets[p])
            for r, v in zip(rows, values, strict=True):
                out[r] = v
        return out

    def get_batch(self, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self._gather(indices, lambda d, i: d.get_batch(i)[0])
        idx, _ = self._locate(indices)
        return torch.stack(rows), torch.from_numpy(self.labels[idx])

    def raw(self, indices: Any) -> np.ndarray:
        return np.stack(self._gather(indices, lambda d, i: d.raw(i)))

    def names(self, prefix: str) -> list[str]:
        """Each example's file (image folders) or ``prefix[i]``."""
        out = []
        for part in self.parts:
            paths = getattr(part, "paths", None)
            out += (
                [str(p) for p in paths]
                if paths is not None
                else [f"{prefix}[{len(out) + i}]" for i in range(len(part))]
            )
        return out

    def subset(self, indices):
        raise NotImplementedError("Concatenated is read-only: subset its parts instead")
