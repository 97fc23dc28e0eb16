"""``cifar10`` and ``cifar100``: the official python archives, or a JPEG tree in a zip or folder.

Layouts found in ``data_dir`` (first match wins):

* ``cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``, ``batches.meta``) or the
  unextracted ``cifar-10-python.tar.gz``; for CIFAR-100 ``cifar-100-python/`` (``train``,
  ``test``, ``meta``) or ``cifar-100-python.tar.gz``. These are pickles: they are read with
  :mod:`magnetdml.data.safe_pickle`, which only rebuilds numpy arrays.
* ``cifar10_jpg.zip`` (or an extracted ``cifar10_jpg/``) holding ``{train,test}/{class}/*.jpg``
  (``cifar100_jpg`` likewise). Decoded once with Pillow and cached as uint8 ``.npy`` (see
  :mod:`magnetdml.data._cache`): the second load reads the cache.

Attributes: CIFAR-10 ``superclass`` (1 = animal: bird, cat, deer, dog, frog, horse; 0 =
vehicle); CIFAR-100 ``coarse`` (the 20 superclasses, from the pickles only).
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

from ._cache import cached_arrays, source_key
from ._files import FileTree, decode_tree
from .base import NORMALISATION, ArrayDataset
from .loading import DATASETS, require_dir
from .safe_pickle import safe_load
from .splits import DataPool

ANIMALS = {"bird", "cat", "deer", "dog", "frog", "horse"}
LAYOUT = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "archive": "cifar-10-python.tar.gz",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "label": "labels",
        "names": "label_names",
        "jpg": "cifar10_jpg",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "archive": "cifar-100-python.tar.gz",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "label": "fine_labels",
        "names": "fine_label_names",
        "jpg": "cifar100_jpg",
    },
}


def _pickle_reader(root: Path, spec: dict):
    """Return ``(read(member) -> bytes, description)`` for the folder or the tar.gz, or None."""
    for folder in (root / spec["folder"], root):
        if (folder / spec["test"][0]).is_file():
            return (lambda m, f=folder: (f / m).read_bytes()), str(folder)
    archive = root / spec["archive"]
    if archive.is_file():
        try:
            tar = tarfile.open(archive, "r:gz")
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        except (tarfile.TarError, OSError, EOFError) as err:
            raise ValueError(
                f"{archive} is corrupt or truncated ({err}); download it again"
            ) from err

        def read(member: str) -> bytes:  # read straight from the archive: nothing extracted
            if member not in members:
                raise ValueError(f"{archive} has no member {member}; is it the right archive?")
            return tar.extractfile(members[member]).read()

        return read, str(archive)
    return None


def _load_pickles(read, where: str, spec: dict, name: str):
    parts = {
        split: [safe_load(read(m), f"{where}/{m}") for m in spec[split]]
        for split in ("train", "test")
    }
    meta = safe_load(read(spec["meta"]), f"{where}/{spec['meta']}")
    class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[spec["names"]]]
    images, labels, coarse, is_test = [], [], [], []
    for split, batches in parts.items():
        for b in batches:
            data = np.asarray(b["data"], dtype=np.uint8)
            if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise ValueError(
                    f"{where}: a {split} batch has data of shape {data.shape}; "
                    "CIFAR batches hold (N, 3072) uint8 rows"
                )
            images.append(data.reshape(-1, 3, 32, 32))  # rows are R plane, G plane, B plane
            labels.append(np.asarray(b[spec["label"]], dtype=np.int64))
            if name == "cifar100":
                coarse.append(np.asarray(b["coarse_labels"], dtype=np.int64))
            is_test.append(np.full(data.shape[0], split == "test"))
    attributes = {"coarse": np.concatenate(coarse)} if coarse else {}
    return (
        np.concatenate(images),
        np.concatenate(labels),
        np.concatenate(is_test),
        class_names,
        attributes,
    )


def _load_jpg(root: Path, spec: dict, cache_dir, use_cache: bool):
    source = next(
        (p for p in (root / f"{spec['jpg']}.zip", root / spec["jpg"]) if p.exists()), None
    )
    if source is None:
        return None

    def build() -> dict[str, np.ndarray]:
        tree = FileTree(source)  # reading a 60k-entry zip directory alone takes ~0.5 s
        names = [
            n
            for n in tree.names()
            if len(n.split("/")) >= 3 and n.split("/")[-3] in ("train", "test")
        ]
        if not names:
            raise ValueError(f"{source} holds no {{train,test}}/<class>/<image> files")
        split = np.array([n.split("/")[-3] == "test" for n in names])
        cls = [n.split("/")[-2] for n in names]
        class_names = np.array(sorted(set(cls)))  # alphabetical = canonical CIFAR-10 order
        labels = np.searchsorted(class_names, cls).astype(np.int64)
        images = decode_tree(tree, names, "RGB").transpose(0, 3, 1, 2)  # (N, 3, H, W)
        return {
            "images": np.ascontiguousarray(images),
            "labels": labels,
            "is_test": split,
            "class_names": class_names,
        }

    arrays, hit = cached_arrays(
        "cifar-jpg", {"source": source_key(source)}, build, cache_dir=cache_dir, use_cache=use_cache
    )
    return arrays, str(source), hit


def load_cifar_pool(name: str, data_dir, cache_dir, use_cache: bool) -> DataPool:
    spec = LAYOUT[name]
    root = require_dir(name, data_dir, f"{spec['folder']}/, {spec['archive']} or {spec['jpg']}.zip")
    reader = _pickle_reader(root, spec)
    info: dict = {}
    if reader is not None:
        images, labels, is_test, class_names, attributes = _load_pickles(*reader, spec, name)
        info["source"] = reader[1]
    else:
        found = _load_jpg(root, spec, cache_dir, use_cache)
        if found is None:
            raise FileNotFoundError(
                f"no {name} data in {root}: expected {spec['folder']}/ or {spec['archive']} "
                f"(the official python version from https://www.cs.toronto.edu/~kriz/"
                f"cifar.html) or {spec['jpg']}.zip with {{train,test}}/<class>/<image>.jpg"
            )
        arrays, info["source"], info["cache_hit"] = found
        images, labels, is_test = arrays["images"], arrays["labels"], arrays["is_test"]
        class_names, attributes = [str(c) for c in arrays["class_names"]], {}
    if name == "cifar10":
        animal = np.array([c in ANIMALS for c in class_names], dtype=np.int64)
        attributes["superclass"] = animal[labels]
    mean, std = NORMALISATION[name]
    dataset = ArrayDataset(images, labels, attributes=attributes, mean=mean, std=std)
    return DataPool(
        dataset, np.asarray(is_test, dtype=bool), class_names, tuple(images.shape[1:]), info=info
    )


@DATASETS.register("cifar10")
def load_cifar10(
    data_dir=None, *, seed: int = 0, cache_dir=None, use_cache: bool = True
) -> DataPool:
    """CIFAR-10 (50k + 10k, 3x32x32); ``cache_dir`` overrides where decoded JPEGs are cached."""
    return load_cifar_pool("cifar10", data_dir, cache_dir, use_cache)


@DATASETS.register("cifar100")
def load_cifar100(
    data_dir=None, *, seed: int = 0, cache_dir=None, use_cache: bool = True
) -> DataPool:
    """CIFAR-100 (50k + 10k, 100 fine classes, attribute ``coarse`` with 20 superclasses)."""
    return load_cifar_pool("cifar100", data_dir, cache_dir, use_cache)
