"""``image-folder``: a tree of class folders (``root/<class>/<image>``, or deeper), read lazily.

This is how CUB-200-2011, Stanford Dogs, Oxford Flowers and Oxford-IIIT Pet are usually
unpacked, and how users keep their own collections. Such sets are large, so images are decoded
per batch (:meth:`ImageFileDataset.get_batch` loops over it: Pillow has no batch decoder) and
resized to ``size`` (``"auto"``: the median image size, longer side capped at ``max_size``;
an int; or ``[H, W]``). ``class_level`` (``"first"``, ``"leaf"`` or a depth) says which folder
level is the class, the levels above become attributes, and ``channels`` (``"auto"``: 1 when
every image is grey) sets grey or RGB: see :mod:`~.image_tree`.

Splits: an optional CSV file (``split_file``, relative to root or absolute) with a header and
columns ``path,split`` or ``path,label,split``; ``split`` is ``train``, ``test`` or ``val``
(``val`` rows go to the ``val`` split), and ``label``, when present, overrides the folder name.
Only the images listed in the CSV are used. Without a CSV, ``test`` is a seeded stratified
``test_fraction`` per class.

Corrupt files: every image is opened once at load time (``check="header"``: Pillow's
``verify``, cheap; ``"full"`` decodes every file; ``"none"`` skips the check). A file that fails
raises an error naming it, or with ``skip_corrupt=True`` is left out, logged and listed in
``ImageFileDataset.skipped`` / ``info["skipped"]``. A corrupt file the check missed still raises
an error naming it when its batch is read.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .._validation import check_choice, check_float
from ._files import DECODE_ERRORS, IMAGE_SUFFIXES
from .base import NORMALISATION, ArrayDataset, LabelledDataset, as_index_tensor
from .image_files import read_images
from .image_tree import (
    check_class_level,
    class_paths,
    level_attributes,
    pin_options,
    resolve_channels,
    resolve_size,
    scan_images,
)
from .loading import DATASETS, OPTION_PINNERS, require_dir
from .splits import STREAM_TEST, DataPool, stratified_holdout

log = logging.getLogger(__name__)

MAX_SIZE = 64  # ``size: auto`` caps the median image's longer side at this (small-cnn
# takes at most 64 x 64; CPU training stays quick)


class ImageFileDataset(LabelledDataset):
    """Images decoded from disk per batch: grey (``C = 1``) or RGB (``C = 3``), resized to
    ``size`` (H, W), then standardised: ``x = (pixels / 255 - mean[c]) / std[c]``."""

    pixel_max = 255.0  # the stored pixels' range (``raw``), as ArrayDataset's

    def __init__(
        self,
        paths: list[Path],
        labels: np.ndarray,
        size: tuple[int, int],
        *,
        channels: int = 3,
        attributes: dict[str, np.ndarray] | None = None,
        mean=None,
        std=None,
        skipped: list[str] | None = None,
    ) -> None:
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.attributes = dict(attributes or {})
        self.size = tuple(size)
        self.channels = int(channels)
        default = NORMALISATION["image-folder" if channels == 3 else "image-folder-grey"]
        self.mean = tuple(default[0] if mean is None else mean)
        self.std = tuple(default[1] if std is None else std)
        self._mean_t = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        self._std_t = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        self.skipped = list(skipped or [])

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.size)

    def raw(self, indices: Any) -> np.ndarray:
        """uint8 ``(B, C, H, W)`` pixels of ``indices``, decoded and resized, before the
        standardisation: what the inference commands read from image files."""
        idx = as_index_tensor(indices).numpy()
        return read_images([self.paths[i] for i in idx], self.sample_shape)

    def input_affine(self) -> tuple[float, np.ndarray, np.ndarray]:
        """``(255, a, b)``: model input ``x = pixels * a + b`` (as ``ArrayDataset``'s)."""
        std, mean = np.asarray(self.std), np.asarray(self.mean)
        shape = (1, -1, 1, 1)
        return (
            self.pixel_max,
            (1.0 / (255.0 * std)).astype(np.float32).reshape(shape),
            (-mean / std).astype(np.float32).reshape(shape),
        )

    def like(self, data: np.ndarray, labels: np.ndarray | None = None) -> ArrayDataset:
        """New uint8 images ``(N, C, H, W)`` preprocessed exactly as this dataset's."""
        labels = np.zeros(len(data), dtype=np.int64) if labels is None else labels
        return ArrayDataset(data, labels, pixel_max=self.pixel_max, mean=self.mean, std=self.std)

    def get_batch(self, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
        idx = as_index_tensor(indices).numpy()
        x = torch.from_numpy(self.raw(idx)).float().div_(255.0)  # (B, C, H, W)
        x = x.sub_(self._mean_t).div_(self._std_t)
        return x.contiguous(), torch.from_numpy(self.labels[idx])

    def subset(self, indices) -> ImageFileDataset:
        pos = np.asarray(indices, dtype=np.int64)
        labels, attributes = self._subset_meta(pos)
        return ImageFileDataset(
            [self.paths[i] for i in pos],
            labels,
            self.size,
            channels=self.channels,
            attributes=attributes,
            mean=self.mean,
            std=self.std,
            skipped=self.skipped,
        )


def _is_readable(path: Path, check: str) -> bool:
    if check == "none":
        return True
    try:
        with Image.open(path) as img:
            img.verify() if check == "header" else img.convert("RGB")
        return True
    except DECODE_ERRORS:
        return False


def _read_split_file(path: Path, root: Path) -> dict[Path, tuple[str | None, str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        if "path" not in cols or "split" not in cols:
            raise ValueError(
                f"split_file {path} needs a header with columns path,split or "
                f"path,label,split; found {cols}"
            )
        rows = list(reader)
    bad = sorted({r["split"] for r in rows} - {"train", "test", "val"})
    if bad:
        raise ValueError(f"split_file {path}: split must be train, test or val; found {bad}")
    return {(root / r["path"]).resolve(): (r.get("label"), r["split"]) for r in rows}


def list_images(root: Path) -> list[Path]:
    """Sorted image files under ``root``'s sub-folders (hidden files and folders left out;
    images directly in ``root`` belong to no class)."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.parent != root
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def pin_image_folder(data_dir, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with the input size, channels and class level fixed from the images
    (:func:`~.image_tree.pin_options`): a run's config then reads new folders like its own."""
    root = require_dir("image-folder", data_dir, "one sub-folder of images per class")
    return pin_options(options, list_images(root), root, max_size=options.get("max_size", MAX_SIZE))


@DATASETS.register("image-folder")
def load_image_folder(
    data_dir=None,
    *,
    seed: int = 0,
    size: Any = "auto",
    channels: Any = "auto",
    class_level: Any = "first",
    max_size: int = MAX_SIZE,
    split_file: str | None = None,
    test_fraction: float = 0.25,
    skip_corrupt: bool = False,
    check: str = "header",
) -> DataPool:
    """Images under ``data_dir``'s class folders; see the module docstring for the options
    and :mod:`~.image_tree` for ``class_level``, ``size``, ``channels`` and ``max_size``."""
    root = require_dir("image-folder", data_dir, "one sub-folder of images per class")
    class_level = check_class_level(class_level)
    check_choice("check", check, ("header", "full", "none"))
    test_fraction = check_float("test_fraction", test_fraction, strict_minimum=0.0, maximum=0.9)
    if size != "auto":
        resolve_size(size, np.zeros((0, 2)), 1)  # bad sizes fail before any I/O
    paths = list_images(root)
    table = None
    if split_file is not None:
        table = _read_split_file(root / split_file, root)
        found = {p.resolve() for p in paths}
        missing = sorted(str(p) for p in table if p not in found)
        if missing:  # silently dropping them can make a whole class vanish
            raise ValueError(
                f"split_file {split_file}: {len(missing)} row(s) name images that "
                f"are not under {root}/<class>/ (e.g. {missing[0]}); fix the paths "
                "(relative to data_dir) or remove those rows"
            )
        paths = [p for p in paths if p.resolve() in table]  # the CSV selects the images
    ok = [_is_readable(p, check) for p in paths]
    skipped = [str(p) for p, good in zip(paths, ok, strict=True) if not good]
    if skipped and not skip_corrupt:
        raise ValueError(
            f"cannot read image {skipped[0]} ({len(skipped)} unreadable file(s) in "
            f"{root}); fix or remove it, or pass skip_corrupt=True to leave such "
            "files out"
        )
    if skipped:
        log.warning(
            "image-folder %s: skipped %d unreadable file(s), e.g. %s",
            root,
            len(skipped),
            skipped[0],
        )
    paths = [p for p, good in zip(paths, ok, strict=True) if good]
    if not paths:
        raise ValueError(
            f"no readable images under {root}/<class>/ (found none of "
            f"{', '.join(IMAGE_SUFFIXES)} in its sub-folders)"
        )
    class_of = class_paths([p.relative_to(root) for p in paths], class_level, root)
    split = None
    if table is not None:
        entries = [table[p.resolve()] for p in paths]
        class_of = [
            lab if lab not in (None, "") else c
            for (lab, _), c in zip(entries, class_of, strict=True)
        ]
        split = np.array([s for _, s in entries])
    class_names, labels = np.unique(np.array(class_of), return_inverse=True)
    labels = labels.astype(np.int64)
    class_names = [str(c) for c in class_names]
    attributes, attribute_names = level_attributes(class_names, labels)
    if split is not None:
        is_test = split == "test"
    else:
        is_test = stratified_holdout(
            labels, test_fraction, rng=np.random.default_rng([seed, STREAM_TEST])
        )
    if size == "auto" or channels == "auto":
        sizes, grey = scan_images(paths)
    hw = resolve_size(size, sizes if size == "auto" else np.zeros((0, 2)), max_size)
    channels = resolve_channels(channels, grey if channels == "auto" else np.zeros(0), root)
    dataset = ImageFileDataset(
        paths, labels, hw, channels=channels, attributes=attributes, skipped=skipped
    )
    return DataPool(
        dataset,
        is_test,
        class_names,
        (channels, *hw),
        is_val=None if split is None else split == "val",
        info={
            "source": str(root),
            "skipped": skipped,
            "class_level": class_level,
            "attribute_names": attribute_names,
        },
    )


OPTION_PINNERS["image-folder"] = pin_image_folder
