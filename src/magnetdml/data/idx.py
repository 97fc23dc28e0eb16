"""``mnist`` and ``fashion-mnist``: the canonical gzip-compressed IDX files.

IDX: a big-endian header ``(magic, n[, rows, cols])`` then uint8 values; magic 2051 for image
files and 2049 for label files. The header is checked against the file size, so a truncated
download is reported with the file's name instead of failing later in a reshape.
``download=True`` fetches missing files and verifies their md5 (canonical values below, the
ones torchvision checks); tests never use the network.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from .base import NORMALISATION, ArrayDataset
from .loading import DATASETS, require_dir
from .splits import DataPool

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

SOURCES = {
    "mnist": {
        "urls": (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        "md5": (
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "d53e105ee54ea40749a09fcbcd1e9432",
            "9fb629c4189551a2d022fa330f9573f3",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
        "classes": [str(i) for i in range(10)],
    },
    "fashion-mnist": {
        "urls": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        "md5": (
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ),
        "classes": [
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ],
    },
}

MAGIC_IMAGES, MAGIC_LABELS = 2051, 2049


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """Parse one IDX file (``.gz`` or raw) into a uint8 array of the header's shape."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise ValueError(
            f"{path} is corrupt or truncated ({err}); delete it and download it again"
        ) from err
    ndim = 3 if magic == MAGIC_IMAGES else 1
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise ValueError(f"{path} is too short ({len(raw)} bytes) for an IDX header")
    found, *dims = struct.unpack(f">{1 + ndim}i", raw[:header])
    if found != magic:
        raise ValueError(
            f"{path} has IDX magic number {found}, expected {magic} "
            f"({'images' if magic == MAGIC_IMAGES else 'labels'}); is it the "
            "right file?"
        )
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise ValueError(
            f"{path} holds {len(raw)} bytes but its header {tuple(dims)} needs "
            f"{expected}: the file is truncated or corrupt; download it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def md5sum(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def fetch(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` (a separate function so tests can replace it)."""
    tmp = dest.with_suffix(dest.suffix + ".part")
    with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
        out.write(response.read())
    tmp.replace(dest)


def download(name: str, root: Path) -> None:
    """Fetch the missing files of ``name`` into ``root``, verifying each md5."""
    root.mkdir(parents=True, exist_ok=True)
    spec = SOURCES[name]
    for stem, md5 in zip(FILES, spec["md5"], strict=True):
        dest = root / f"{stem}.gz"
        if dest.exists() and md5sum(dest) == md5:
            continue
        errors = []
        for base in spec["urls"]:
            try:
                fetch(base + dest.name, dest)
            except OSError as err:
                errors.append(f"{base}: {err}")
                continue
            got = md5sum(dest)
            if got == md5:
                break
            dest.unlink()
            errors.append(f"{base}: md5 {got} != {md5}")
        else:
            raise RuntimeError(f"could not download {dest.name} for {name}: " + "; ".join(errors))


def find_file(root: Path, stem: str, name: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"{root / (stem + '.gz')} not found: put the four {name} IDX files "
        f"({', '.join(f + '.gz' for f in FILES)}) in {root}, or pass "
        "download=True (needs internet)"
    )


def check_not_other_dataset(name: str, paths: list[Path]) -> None:
    """Refuse canonical files of the *other* IDX dataset (same shapes, same label range:
    ``--dataset fashion-mnist`` on MNIST's files would train on digits without a word). The
    ``.gz`` files are recognised by their published md5; other copies pass unchecked."""
    for path, position in zip(paths, range(len(FILES)), strict=False):
        if path.suffix != ".gz":
            continue
        digest = md5sum(path)
        for other, source in SOURCES.items():
            if other != name and digest == source["md5"][position]:
                raise ValueError(
                    f"{str(path)!r} is {other}'s {FILES[position]}, not "
                    f"{name}'s; point --data-dir at the {name} files (or use "
                    f"--dataset {other})"
                )


def load_idx_pool(name: str, data_dir, download_missing: bool) -> DataPool:
    root = (
        Path(data_dir).expanduser()
        if data_dir is not None and download_missing
        else require_dir(name, data_dir, f"the four {name} IDX files ({FILES[0]}.gz, ...)")
    )
    if download_missing:
        download(name, root)
    paths = [find_file(root, stem, name) for stem in FILES]
    check_not_other_dataset(name, paths)
    arrays = [
        read_idx(path, MAGIC_LABELS if "labels" in stem else MAGIC_IMAGES)
        for path, stem in zip(paths, FILES, strict=True)
    ]
    train_x, train_y, test_x, test_y = arrays
    for x, y, split in ((train_x, train_y, "train"), (test_x, test_y, "t10k")):
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"{name} {split}: {x.shape[0]} images but {y.shape[0]} labels; "
                "one of the files belongs to another dataset or is damaged"
            )
    images = np.concatenate([train_x, test_x])[:, None]  # (N, 1, 28, 28) uint8
    labels = np.concatenate([train_y, test_y]).astype(np.int64)
    classes = SOURCES[name]["classes"]
    if labels.size and labels.max() >= len(classes):
        raise ValueError(f"{name} labels must be 0..{len(classes) - 1}; found {labels.max()}")
    is_test = np.arange(labels.shape[0]) >= train_x.shape[0]
    mean, std = NORMALISATION[name]
    return DataPool(
        ArrayDataset(images, labels, mean=mean, std=std),
        is_test,
        list(classes),
        tuple(images.shape[1:]),
        info={"source": str(root)},
    )


@DATASETS.register("mnist")
def load_mnist(data_dir=None, *, seed: int = 0, download: bool = False) -> DataPool:
    """MNIST from ``data_dir`` holding ``train-images-idx3-ubyte.gz`` etc. (60k + 10k)."""
    return load_idx_pool("mnist", data_dir, download)


@DATASETS.register("fashion-mnist")
def load_fashion_mnist(data_dir=None, *, seed: int = 0, download: bool = False) -> DataPool:
    """Fashion-MNIST, same file names and format as MNIST (60k + 10k)."""
    return load_idx_pool("fashion-mnist", data_dir, download)
