"""Image files a user hands to a trained run (``magnetdml predict RUN --images ...``).

:func:`image_paths` expands files and folders (recursively, sorted) into image paths;
:func:`read_images` decodes them to the uint8 layout the run's loader produced: ``(N, C, H, W)``
at the training inputs' size (Pillow, antialiased bilinear), grey (``C = 1``) or RGB
(``C = 3``), optionally inverted (Omniglot's loader makes strokes bright).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._files import IMAGE_SUFFIXES, decode_image


def image_paths(items: Sequence[str | Path]) -> list[Path]:
    """Every image file named in ``items`` or found under a folder of ``items``."""
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            # hidden files and folders *inside* the folder are skipped; the folder's own
            # path may well start with a dot ("../photos", "./new")
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                raise ValueError(
                    f"folder {str(path)!r} holds no image files ({', '.join(IMAGE_SUFFIXES)})"
                )
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            raise FileNotFoundError(
                f"image {str(path)!r} does not exist; pass image files or folders of them"
            )
    if not paths:
        raise ValueError("no images given; pass image files or folders of them")
    return paths


def read_images(
    paths: Sequence[Path], input_shape: Sequence[int], *, invert: bool = False
) -> np.ndarray:
    """uint8 ``(N, C, H, W)`` of ``paths`` resized to ``input_shape = (C, H, W)``."""
    if len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise ValueError(
            f"this run's inputs have shape {tuple(input_shape)}, not images "
            "(C, H, W) with 1 or 3 channels: pass data of its dataset instead"
        )
    channels, height, width = (int(v) for v in input_shape)
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(paths), channels, height, width), dtype=np.uint8)
    for i, path in enumerate(paths):
        image = decode_image(Path(path), mode, str(path), size=(height, width))
        out[i] = image[None] if channels == 1 else image.transpose(2, 0, 1)
    return 255 - out if invert else out
