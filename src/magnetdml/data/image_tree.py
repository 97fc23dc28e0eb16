"""How an image folder's tree becomes classes, attributes, a channel count and an input size.

A user's collection is a tree, e.g. ``ROOT/<alphabet>/<character>/*.png``. Three choices read it:

* **class level** (``class_level``): ``"first"`` (default; torchvision's ImageFolder: the
  first folder under ``ROOT`` is the class), ``"leaf"`` (the folder holding each image), or a
  depth ``N >= 1`` (the first ``N`` folders). A class is named by its relative path
  (``"Korean/character01"``).
* **attributes**: the levels above the class, which training never sees. For a class path of
  ``d`` parts, ``parent`` is its first ``d - 1`` (``"."`` for a class at the top) and
  ``level_n`` its first ``n``, for every ``n`` below the shallowest class's depth (kept only
  where it differs from ``parent``). Each is an ``(N,)`` int64 attribute of the
  dataset; its names are ``info["attribute_names"][name]``. ``data.collapse_pairs`` trains on
  ``parent`` as the coarse label, and ``cluster`` / ``evaluate`` score against every level.
* **channels and size** (:func:`scan_images`, from the files' headers, no decoding): ``channels``
  ``"auto"`` is 1 when every image is grey or 1-bit (modes ``1``, ``L``, ``LA``, ``I``, ``F``,
  ``I;16``; a palette of grey entries), else 3 (a mixed folder is read as RGB, said once in
  the log); ``size`` ``"auto"`` is the median height and width, shrunk (aspect kept) so the
  longer side is at most ``max_size``.

:func:`pin_options` writes the resolved choices into a run's ``data.options`` before training,
so every later command reads new folders the same way even if the training folder changes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .._validation import check_int
from ._files import DECODE_ERRORS

log = logging.getLogger(__name__)

GREY_MODES = frozenset({"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "La"})
#: The options :func:`pin_options` fixes (and ``evaluate --dataset`` / ``--dataset`` inputs of
#: the inference commands inherit): how a folder is read, not which images are used.
READING_OPTIONS = ("class_level", "size", "channels")


def check_class_level(value: Any) -> str | int:
    """``"first"``, ``"leaf"`` or a depth ``N >= 1``; raises naming the rule otherwise."""
    if value in ("first", "leaf"):
        return value
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(
            f"class_level must be 'first', 'leaf' or a folder depth >= 1 (1 is "
            f"'first'); got {value!r}"
        )
    return int(value)


def class_paths(relative: Sequence[Path], class_level: str | int, root: Path) -> list[str]:
    """The class path (``"a/b"``) of every image path ``relative`` to ``root``."""
    level = check_class_level(class_level)
    out = []
    for rel in relative:
        folders = rel.parts[:-1]
        depth = len(folders) if level == "leaf" else (1 if level == "first" else level)
        if len(folders) < max(depth, 1):
            raise ValueError(
                f"image {root / rel} sits {len(folders)} folder(s) below {root}, "
                f"but class_level={level!r} needs at least {max(depth, 1)}; move "
                "it into a class folder, or choose class_level 'leaf' or a "
                "smaller depth"
            )
        out.append("/".join(folders[:depth]))
    return out


def level_attributes(
    class_names: Sequence[str], labels: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """``(attributes, names)``: ``level_n`` and ``parent`` of every example (see module)."""
    parts = [name.split("/") for name in class_names]
    deepest, shallowest = max(len(p) for p in parts), min(len(p) for p in parts)
    groups: dict[str, list[str]] = {}
    parent = ["/".join(p[:-1]) or "." for p in parts]
    for n in range(1, shallowest):  # levels every class has above it
        level = ["/".join(p[:n]) for p in parts]
        if level != parent:  # a uniform two-level tree: level_1 is the parent
            groups[f"level_{n}"] = level
    if deepest > 1:
        groups["parent"] = parent
    attributes, names = {}, {}
    for key, per_class in groups.items():
        values, ids = np.unique(np.asarray(per_class), return_inverse=True)
        attributes[key] = ids.astype(np.int64)[labels]
        names[key] = [str(v) for v in values]
    return attributes, names


def _is_grey(img: Image.Image) -> bool:
    if img.mode in GREY_MODES:
        return True
    if img.mode == "P":  # a palette of grey entries only (read from the header)
        palette = np.asarray(img.getpalette() or [0, 0, 0], dtype=np.int64).reshape(-1, 3)
        return bool((palette == palette[:, :1]).all())
    return False


def scan_images(paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
    """``(sizes (N, 2) as (H, W), grey (N,) bool)`` read from the files' headers."""
    sizes = np.zeros((len(paths), 2), dtype=np.int64)
    grey = np.zeros(len(paths), dtype=bool)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                sizes[i] = img.size[1], img.size[0]
                grey[i] = _is_grey(img)
        except DECODE_ERRORS:  # unreadable files are the loader's to report
            sizes[i] = -1
    return sizes, grey


def resolve_size(size: Any, sizes: np.ndarray, max_size: int) -> tuple[int, int]:
    """``(H, W)``: ``size`` as given (int or pair), or for ``"auto"`` the median image size
    with its longer side capped at ``max_size``."""
    if size == "auto":
        check_int("max_size", max_size, minimum=1)
        known = sizes[sizes[:, 0] > 0]
        if not len(known):
            return (max_size, max_size)
        h, w = (float(v) for v in np.median(known, axis=0))
        shrink = min(1.0, max_size / max(h, w))
        return (max(1, round(h * shrink)), max(1, round(w * shrink)))
    if isinstance(size, (list, tuple)) and len(size) == 2:
        hw = tuple(size)
    elif isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        hw = (size, size)
    else:
        raise ValueError(f"size must be 'auto', an int or [height, width]; got {size!r}")
    return tuple(check_int("size", s, minimum=1) for s in hw)


def resolve_channels(channels: Any, grey: np.ndarray, where: Path) -> int:
    """1 or 3: ``channels`` as given, or for ``"auto"`` 1 when every image is grey."""
    if channels == "auto":
        if grey.all():
            return 1
        if grey.any():
            log.warning(
                "image-folder %s: %d grey and %d colour images; all are read as RGB "
                "(3 channels; data.options '{channels: 1}' reads them all as grey)",
                where,
                int(grey.sum()),
                int((~grey).sum()),
            )
        return 3
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"channels must be 'auto', 1 (grey) or 3 (RGB); got {channels!r}")
    return int(channels)


def pin_options(
    options: dict[str, Any], paths: Sequence[Path], root: Path, *, max_size: int
) -> dict[str, Any]:
    """``options`` with ``size`` and ``channels`` resolved from the images (see module)."""
    sizes, grey = scan_images(paths)
    pinned = dict(options)
    pinned["size"] = list(resolve_size(options.get("size", "auto"), sizes, max_size))
    pinned["channels"] = resolve_channels(options.get("channels", "auto"), grey, root)
    pinned["class_level"] = check_class_level(options.get("class_level", "first"))
    pinned.pop("max_size", None)  # spent: the size is fixed now
    return pinned


def options_text(options: dict[str, Any]) -> str:
    """Canonical ``data.options`` text (JSON is YAML): the same options give the same text,
    so a resumed run's config matches the one it was pinned to."""
    return json.dumps(options, sort_keys=True)
