"""The dataset contract the training loop relies on, and its in-memory implementation.

A :class:`LabelledDataset` maps an index to ``(x, label)`` and, for the training loop's hot path,
a whole index list to a batch with :meth:`LabelledDataset.get_batch`. Images are kept as
``uint8`` (MNIST's 60k training images are 47 MB that way, 188 MB as float32) and converted per
batch: ``x = (pixels / pixel_max - mean[c]) / std[c]``, float32, with fixed per-dataset channel
statistics (:data:`NORMALISATION`). Labels are contiguous class ids ``0..C-1`` of the *whole*
dataset, so the seen, held-out and unseen splits of one dataset never reuse an id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

# Per-dataset channel (mean, std) of the training pixels after scaling to [0, 1], measured on
# the training sets (MNIST / Fashion-MNIST / digits / Omniglot measured here on the real files;
# CIFAR from the canonical training set). Fixed constants, not fitted per run, so a model
# trained on one run can be evaluated on another with identical inputs.
NORMALISATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "digits": ((0.3053,), (0.3760,)),  # sklearn load_digits, 0..16 scaled by 1/16
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    # Inverted (strokes bright) and resized to 28x28; at 105x105 the std is 0.268.
    "omniglot": ((0.0779,), (0.2155,)),
    # ImageNet statistics: the usual choice for natural-image folders (CUB, Dogs, Flowers, Pets).
    "image-folder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # A grey image folder: the mean of ImageNet's three channel statistics.
    "image-folder-grey": ((0.449,), (0.226,)),
}


def as_index_tensor(indices: Any) -> torch.Tensor:
    """Return ``indices`` (list, numpy array, tensor or int) as a 1-D int64 CPU tensor."""
    if isinstance(indices, torch.Tensor):
        return indices.reshape(-1).to(device="cpu", dtype=torch.int64)
    return torch.as_tensor(np.asarray(indices, dtype=np.int64).reshape(-1))


class LabelledDataset(Dataset):
    """Abstract labelled dataset: ``labels (N,)`` int64, ``attributes`` name -> ``(N,)`` int64.

    Subclasses implement :meth:`get_batch` and :meth:`subset`; ``__getitem__`` is one-element
    ``get_batch`` so a ``torch.utils.data.DataLoader`` works unchanged.
    """

    labels: np.ndarray
    attributes: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = self.get_batch([i])
        return x[0], int(y[0])

    def get_batch(self, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(x (B, *shape) float32, y (B,) int64)`` for ``indices`` (B,)."""
        raise NotImplementedError

    def subset(self, indices: Sequence[int] | np.ndarray) -> LabelledDataset:
        """Return a dataset of the rows ``indices`` (positions in this dataset)."""
        raise NotImplementedError

    def _subset_meta(self, rows: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return self.labels[rows], {k: v[rows] for k, v in self.attributes.items()}


class ArrayDataset(LabelledDataset):
    """In-memory (or memory-mapped) dataset: ``data (N, *shape)`` uint8 images or float features.

    ``get_batch`` gathers rows and normalises them in one vectorised step:
    ``x = (data[rows] / pixel_max - mean) / std = data[rows] * a + b`` with ``mean``/``std`` per
    channel (dim 1). Float data (feature vectors) is returned as is unless ``mean``/``std`` are
    given. On the CPU the storage is a numpy array (a ``numpy.memmap`` reads only the requested
    rows): numpy's single-threaded gather of 48 rows takes ~5 us, where torch's OpenMP gather
    took ~4 ms on this busy 2-core machine. After :meth:`to` a GPU it is a torch tensor there.
    """

    def __init__(
        self,
        data: np.ndarray | torch.Tensor,
        labels: np.ndarray,
        *,
        attributes: dict[str, np.ndarray] | None = None,
        pixel_max: float = 255.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        rows: np.ndarray | None = None,
    ) -> None:
        if isinstance(data, torch.Tensor) and data.device.type == "cpu":
            data = data.numpy()
        if isinstance(data, np.ndarray) and not isinstance(data, np.memmap):
            data = np.ascontiguousarray(data)
        self._data = data
        # ``rows`` maps this view's positions to rows of the shared storage: subsets share it.
        self._rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.attributes = {k: np.asarray(v, dtype=np.int64) for k, v in (attributes or {}).items()}
        self.pixel_max = float(pixel_max)  # the largest stored pixel value (uint8: 255)
        self._mean, self._std = mean, std
        # x * a + b: a = 1 / (pixel_max * std), b = -mean / std, broadcast over (B, C, 1, 1, ...).
        ndim = len(self.sample_shape)
        shape = (1, -1) + (1,) * (ndim - 1) if mean is not None else (1,) * (ndim + 1)
        integer = not (
            data.dtype.is_floating_point
            if isinstance(data, torch.Tensor)
            else np.issubdtype(data.dtype, np.floating)
        )
        inv_max = 1.0 / self.pixel_max if integer else 1.0
        std_arr = np.asarray(std if std is not None else [1.0], dtype=np.float64)
        mean_arr = np.asarray(mean if mean is not None else [0.0], dtype=np.float64)
        self._a = (inv_max / std_arr).astype(np.float32).reshape(shape)
        self._b = (-mean_arr / std_arr).astype(np.float32).reshape(shape)
        self._identity = not integer and mean is None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self._data.shape[1:])

    def like(
        self, data: np.ndarray | torch.Tensor, labels: np.ndarray | None = None
    ) -> ArrayDataset:
        """New raw examples ``data`` (same dtype kind and sample shape) preprocessed exactly
        as this dataset's: the same pixel range, mean and standard deviation. ``labels`` default to
        0 (unknown)."""
        labels = np.zeros(len(data), dtype=np.int64) if labels is None else labels
        return ArrayDataset(data, labels, pixel_max=self.pixel_max, mean=self._mean, std=self._std)

    def input_affine(self) -> tuple[float, np.ndarray, np.ndarray] | None:
        """``(pixel_max, a, b)`` with model input ``x = stored * a + b`` (``a``, ``b``
        broadcast over ``(N, C, ...)``) and stored values in ``0..pixel_max``; ``None`` for
        float data used as it is (feature vectors)."""
        return None if self._identity else (self.pixel_max, self._a, self._b)

    def raw(self, indices: Any) -> np.ndarray:
        """The stored examples ``(B, *sample_shape)`` as the loader kept them (e.g. uint8
        pixels in ``0..pixel_max``), before any preprocessing: for pictures of them."""
        idx = as_index_tensor(indices).numpy()
        rows = idx if self._rows is None else self._rows[idx]
        data = self._data.cpu().numpy() if isinstance(self._data, torch.Tensor) else self._data
        return np.take(data, rows, axis=0)

    def to(self, device: torch.device | str) -> ArrayDataset:
        """Move the storage (and so every batch) to ``device``, e.g. a GPU; returns ``self``."""
        device = torch.device(device)
        if device.type == "cpu":
            if isinstance(self._data, torch.Tensor):
                self._data = self._data.cpu().numpy()
        else:
            data = (
                self._data
                if isinstance(self._data, torch.Tensor)
                else torch.from_numpy(np.ascontiguousarray(self._data))
            )
            self._data = data.to(device)
        return self

    def get_batch(self, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
        idx = as_index_tensor(indices).numpy()
        rows = idx if self._rows is None else self._rows[idx]
        labels = torch.from_numpy(self.labels[idx])
        if isinstance(self._data, torch.Tensor):  # accelerator storage
            dev = self._data.device
            x = self._data[torch.as_tensor(rows, device=dev)].float()  # (B, *shape)
            if not self._identity:
                a, b = (torch.from_numpy(t).to(dev) for t in (self._a, self._b))
                x = x.mul_(a).add_(b)
            return x, labels.to(dev)
        x = np.take(self._data, rows, axis=0)  # (B, *shape); memmap: reads rows
        x = x.astype(np.float32)  # a copy: never the storage
        if not self._identity:
            x *= self._a
            x += self._b
        return torch.from_numpy(x), labels

    def subset(self, indices: Sequence[int] | np.ndarray) -> ArrayDataset:
        pos = np.asarray(indices, dtype=np.int64)
        labels, attributes = self._subset_meta(pos)
        rows = pos if self._rows is None else self._rows[pos]
        return ArrayDataset(
            self._data,
            labels,
            attributes=attributes,
            pixel_max=self.pixel_max,
            mean=self._mean,
            std=self._std,
            rows=rows,
        )
