"""The dataset registry (CLI ``--dataset NAME --data-dir DIR``) and :func:`load_dataset`."""

from __future__ import annotations

import inspect
import os
import time
from pathlib import Path
from typing import Any

from ..registry import Registry
from .splits import DataPool, DatasetSplits, split_pool

#: name -> loader ``(data_dir, *, seed, **options) -> DataPool``.
DATASETS: Registry[DataPool] = Registry("dataset")
#: name -> ``(data_dir, options) -> options``: a loader whose defaults depend on the data
#: (``image-folder``'s size, channels) fixes them here, so a run's config records them.
OPTION_PINNERS: dict[str, Any] = {}


def pin_loader_options(
    name: str, data_dir: str | os.PathLike | None, options: dict[str, Any]
) -> dict[str, Any] | None:
    """The loader options with every data-dependent default resolved, or ``None`` when the
    dataset ``name`` has none."""
    pinner = OPTION_PINNERS.get(name)
    return None if pinner is None else pinner(data_dir, dict(options))


def require_dir(name: str, data_dir: str | os.PathLike | None, expects: str) -> Path:
    """Return ``data_dir`` as a Path, or raise saying what the folder must hold."""
    if data_dir is None:
        raise ValueError(
            f"dataset {name!r} needs data_dir (CLI: --data-dir DIR): the folder holding {expects}"
        )
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"data_dir {str(path)!r} for dataset {name!r} does not exist; it should hold {expects}"
        )
    return path


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.0,
    unseen_classes: Any = None,
    val_classes: float = 0.0,
    split_by: str | None = None,
    val_folds: int = 0,
    val_fold: int = 0,
    **options: Any,
) -> DatasetSplits:
    """Load dataset ``name`` and cut it into seeded train / test / val / unseen splits.

    Args:
        name: a registered name (``DATASETS.names()``): digits, mnist, fashion-mnist, cifar10,
            cifar100, omniglot, image-folder, features.
        data_dir: the folder (or file, for ``features``) holding the data; ``digits`` needs none.
        seed: seeds every random split (each purpose has its own stream).
        val_fraction: fraction of each seen class's training examples moved to ``val``.
        unseen_classes: a fraction of the classes (seeded choice) or a list of class ids or
            names held out entirely: all their examples go to ``unseen`` and none to
            train / test / val (class-disjoint protocol).
        val_classes: a fraction of the remaining classes (seeded choice) whose examples all
            go to ``val`` (class-disjoint validation; exclusive with ``val_fraction``).
        split_by: a class attribute (e.g. ``"alphabet"``); the two fractions above then
            count its groups, and a group's classes are held out together.
        val_folds, val_fold: k-fold cross-validation over the seen classes: they are cut
            into ``val_folds`` seeded folds and fold ``val_fold`` goes to ``val``
            (exclusive with ``val_classes`` and ``val_fraction``; 0: no folds).
        **options: loader options (see each loader's docstring), e.g. ``download=True`` for
            MNIST, ``size=28`` and ``unseen_alphabets=0.2`` for Omniglot.

    Returns:
        :class:`DatasetSplits`; ``info["load_seconds"]`` records the load time.
    """
    loader = DATASETS.get(name)
    params = inspect.signature(loader).parameters
    allowed = sorted(p for p in params if p not in ("data_dir", "seed"))
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(
            f"dataset {name!r} has no option(s) {', '.join(unknown)}; valid "
            f"options: {', '.join(allowed) or '(none)'}"
        )
    start = time.perf_counter()
    pool = loader(data_dir, seed=seed, **options)
    splits = split_pool(
        name,
        pool,
        seed=seed,
        val_fraction=val_fraction,
        unseen_classes=unseen_classes,
        val_classes=val_classes,
        split_by=split_by,
        val_folds=val_folds,
        val_fold=val_fold,
    )
    splits.info["load_seconds"] = round(time.perf_counter() - start, 3)
    return splits
