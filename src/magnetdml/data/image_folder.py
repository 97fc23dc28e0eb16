"""``image-folder``: the generic ``root/<class>/<image>`` layout, read lazily.

This is how CUB-200-2011, Stanford Dogs, Oxford Flowers and Oxford-IIIT Pet are usually
unpacked. Such sets are large, so images are decoded per item (:meth:`ImageFileDataset.get_batch`
loops over the batch: Pillow has no batch decoder) and resized to ``size`` (int or (H, W)).

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

from .._validation import check_choice, check_float, check_int
from ._files import DECODE_ERRORS, IMAGE_SUFFIXES, decode_image
from .base import NORMALISATION, LabelledDataset, as_index_tensor
from .loading import DATASETS, require_dir
from .splits import STREAM_TEST, DataPool, stratified_holdout

log = logging.getLogger(__name__)


class ImageFileDataset(LabelledDataset):
    """Images decoded from disk per item: RGB, resized to ``size`` (H, W), standardised."""

    def __init__(self, paths: list[Path], labels: np.ndarray, size: tuple[int, int], *,
                 attributes: dict[str, np.ndarray] | None = None,
                 mean=NORMALISATION["image-folder"][0], std=NORMALISATION["image-folder"][1],
                 skipped: list[str] | None = None) -> None:
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.attributes = dict(attributes or {})
        self.size = size
        self.mean, self.std = mean, std
        self._mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self._std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.skipped = list(skipped or [])

    def get_batch(self, indices: Any) -> tuple[torch.Tensor, torch.Tensor]:
        idx = as_index_tensor(indices).numpy()
        pixels = np.stack([decode_image(self.paths[i], "RGB", str(self.paths[i]), self.size)
                           for i in idx])                         # (B, H, W, 3) uint8
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)
        x = x.sub_(self._mean_t).div_(self._std_t)
        return x.contiguous(), torch.from_numpy(self.labels[idx])

    def subset(self, indices) -> ImageFileDataset:
        pos = np.asarray(indices, dtype=np.int64)
        labels, attributes = self._subset_meta(pos)
        return ImageFileDataset([self.paths[i] for i in pos], labels, self.size,
                                attributes=attributes, mean=self.mean, std=self.std,
                                skipped=self.skipped)


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
            raise ValueError(f"split_file {path} needs a header with columns path,split or "
                             f"path,label,split; found {cols}")
        rows = list(reader)
    bad = sorted({r["split"] for r in rows} - {"train", "test", "val"})
    if bad:
        raise ValueError(f"split_file {path}: split must be train, test or val; found {bad}")
    return {(root / r["path"]).resolve(): (r.get("label"), r["split"]) for r in rows}


@DATASETS.register("image-folder")
def load_image_folder(data_dir=None, *, seed: int = 0, size: int | tuple[int, int] = 64,
                      split_file: str | None = None, test_fraction: float = 0.25,
                      skip_corrupt: bool = False, check: str = "header") -> DataPool:
    """Images under ``data_dir/<class>/``; see the module docstring for the options."""
    root = require_dir("image-folder", data_dir, "one sub-folder of images per class")
    hw = (size, size) if isinstance(size, int) else tuple(size)
    for s in hw:
        check_int("size", s, minimum=1)
    check_choice("check", check, ("header", "full", "none"))
    test_fraction = check_float("test_fraction", test_fraction, strict_minimum=0.0, maximum=0.9)
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.parent != root
                   and p.suffix.lower() in IMAGE_SUFFIXES)
    table = None
    if split_file is not None:
        table = _read_split_file(root / split_file, root)
        found = {p.resolve() for p in paths}
        missing = sorted(str(p) for p in table if p not in found)
        if missing:          # silently dropping them can make a whole class vanish
            raise ValueError(f"split_file {split_file}: {len(missing)} row(s) name images that "
                             f"are not under {root}/<class>/ (e.g. {missing[0]}); fix the paths "
                             "(relative to data_dir) or remove those rows")
        paths = [p for p in paths if p.resolve() in table]      # the CSV selects the images
    ok = [_is_readable(p, check) for p in paths]
    skipped = [str(p) for p, good in zip(paths, ok, strict=True) if not good]
    if skipped and not skip_corrupt:
        raise ValueError(f"cannot read image {skipped[0]} ({len(skipped)} unreadable file(s) in "
                         f"{root}); fix or remove it, or pass skip_corrupt=True to leave such "
                         "files out")
    if skipped:
        log.warning("image-folder %s: skipped %d unreadable file(s), e.g. %s", root,
                    len(skipped), skipped[0])
    paths = [p for p, good in zip(paths, ok, strict=True) if good]
    if not paths:
        raise ValueError(f"no readable images under {root}/<class>/")
    class_of = [p.relative_to(root).parts[0] for p in paths]
    split = None
    if table is not None:
        entries = [table[p.resolve()] for p in paths]
        class_of = [lab if lab not in (None, "") else c
                    for (lab, _), c in zip(entries, class_of, strict=True)]
        split = np.array([s for _, s in entries])
    class_names, labels = np.unique(np.array(class_of), return_inverse=True)
    labels = labels.astype(np.int64)
    if split is not None:
        is_test = split == "test"
    else:
        is_test = stratified_holdout(labels, test_fraction,
                                     rng=np.random.default_rng([seed, STREAM_TEST]))
    dataset = ImageFileDataset(paths, labels, hw, skipped=skipped)
    return DataPool(dataset, is_test, [str(c) for c in class_names], (3, *hw),
                    is_val=None if split is None else split == "val",
                    info={"source": str(root), "skipped": skipped})
