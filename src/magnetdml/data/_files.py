"""Read image trees from a folder or straight from a zip archive, and decode them with Pillow.

``cifar10_jpg.zip`` and Omniglot's ``images_background.zip`` are used as distributed: members
are read from the archive without extracting it. Every decoding error names the file.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")

# Errors Pillow raises on a truncated, corrupt or non-image file, or on one too large to decode
# (its guard against decompression bombs: more than twice Image.MAX_IMAGE_PIXELS).
DECODE_ERRORS = (
    OSError,
    UnidentifiedImageError,
    ValueError,
    SyntaxError,
    EOFError,
    Image.DecompressionBombError,
)


class FileTree:
    """Files under a folder or inside a zip, addressed by relative POSIX paths."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._zip = zipfile.ZipFile(self.path) if self.path.is_file() else None
        except zipfile.BadZipFile as error:
            raise ValueError(
                f"{str(self.path)!r} is not a readable zip archive ({error}); "
                "download it again, or unpack it and point at the folder"
            ) from None

    def names(self) -> list[str]:
        """Sorted relative paths of all image files (folders and hidden files left out)."""
        if self._zip is not None:
            found = [n for n in self._zip.namelist() if not n.endswith("/")]
        else:
            found = [
                p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()
            ]
        return sorted(
            n
            for n in found
            if n.lower().endswith(IMAGE_SUFFIXES)
            and not any(part.startswith(".") or part == "__MACOSX" for part in n.split("/"))
        )

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(name)
        return (self.path / name).read_bytes()

    def describe(self, name: str) -> str:
        return f"{self.path}!{name}" if self._zip is not None else str(self.path / name)


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Transparent pixels over white (``convert`` would keep whatever colour they hide)."""
    if img.mode not in ("RGBA", "LA", "PA") and not (
        img.mode in ("P", "L", "RGB") and "transparency" in img.info
    ):
        return img
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba)


def decode_image(
    data: bytes | Path, mode: str, where: str, size: tuple[int, int] | None = None
) -> np.ndarray:
    """Decode one image to uint8 ``(H, W)`` (mode ``L``) or ``(H, W, 3)`` (``RGB``).

    ``size`` (H, W) resizes with Pillow's antialiased bilinear filter. Raises ``ValueError``
    naming ``where`` when the file is not a readable image.
    """
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
            img = _flatten_alpha(img).convert(mode)
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except Image.DecompressionBombError as err:  # Pillow's guard against huge images
        raise ValueError(
            f"image {where} is too large to decode ({err.args[0].split(',')[0]}"
            "); downscale it first (a photo of a few megapixels is plenty)"
        ) from None
    except DECODE_ERRORS as err:
        raise ValueError(
            f"cannot decode image {where}: {err} (the file is corrupt or not an "
            "image; re-download it or remove it)"
        ) from err


def decode_tree(tree: FileTree, names: list[str], mode: str) -> np.ndarray:
    """Decode ``names`` from ``tree`` into one uint8 array ``(N, H, W[, 3])`` of equal sizes."""
    first = decode_image(tree.read(names[0]), mode, tree.describe(names[0]))
    out = np.empty((len(names),) + first.shape, dtype=np.uint8)
    out[0] = first
    for i, name in enumerate(names[1:], start=1):  # decoding is per file: no batch API exists
        img = decode_image(tree.read(name), mode, tree.describe(name))
        if img.shape != first.shape:
            raise ValueError(
                f"image {tree.describe(name)} has shape {img.shape}, but "
                f"{tree.describe(names[0])} has {first.shape}; this format needs "
                "images of one size"
            )
        out[i] = img
    return out
