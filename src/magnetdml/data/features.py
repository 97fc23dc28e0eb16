"""``features``: feature vectors computed by another model (e.g. a frozen pretrained backbone).

``data_dir`` is a file:

* ``.npz`` with ``X`` (N, F) and ``y`` (N,), optionally ``X_test`` / ``y_test``;
* ``.csv`` with a header row; the label is the ``label`` column if there is one, else the last
  column; every other column is a float feature.

Labels may be integers or strings; either way they are mapped to contiguous ids 0..C-1 in sorted
order (``class_names`` keeps the originals). Without an explicit test set, ``test`` is a seeded
stratified ``test_fraction`` of each class. Vectors are returned as float32 ``(F,)``, unscaled.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .._validation import check_float
from .base import ArrayDataset
from .loading import DATASETS, require_dir
from .splits import STREAM_TEST, DataPool, stratified_holdout


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise ValueError(f"{path} needs a header row and at least one data row")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    widths = {len(r) for r in body}
    if widths != {len(header)}:
        raise ValueError(
            f"{path}: every row must have {len(header)} fields like the header; "
            f"found rows of {sorted(widths)} fields"
        )
    table = np.asarray(body, dtype=str)  # (N, columns)
    label_col = header.index("label") if "label" in header else len(header) - 1
    feature_cols = [i for i in range(len(header)) if i != label_col]
    try:
        X = table[:, feature_cols].astype(np.float32)
    except ValueError as err:
        raise ValueError(
            f"{path}: feature columns must be numbers ({err}); the label must be "
            "the last column or a column named 'label'"
        ) from err
    labels = table[:, label_col]
    try:  # integer labels sort numerically (2 before 10), not as text
        return X, labels.astype(np.int64)
    except ValueError:
        return X, labels


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        missing = {"X", "y"} - set(z.files)
        if missing:
            raise ValueError(
                f"{path} must hold arrays X (N, F) and y (N,); missing "
                f"{sorted(missing)}, found {sorted(z.files)}"
            )
        return {k: z[k] for k in z.files}


@DATASETS.register("features")
def load_features(data_dir=None, *, seed: int = 0, test_fraction: float = 0.25) -> DataPool:
    """Feature vectors from a ``.npz`` or ``.csv`` file (``data_dir`` is the file)."""
    test_fraction = check_float("test_fraction", test_fraction, strict_minimum=0.0, maximum=0.9)
    path = require_dir("features", data_dir, "a .npz (X, y[, X_test, y_test]) or .csv file")
    if path.suffix == ".npz":
        z = _read_npz(path)
        parts = [(z["X"], z["y"])] + ([(z["X_test"], z["y_test"])] if "X_test" in z else [])
    elif path.suffix == ".csv":
        parts = [_read_csv(path)]
    else:
        raise ValueError(f"features data_dir must be a .npz or .csv file; got {path}")
    for X, y in parts:
        if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
            raise ValueError(
                f"{path}: features must be (N, F) with labels (N,); got {X.shape} and {y.shape}"
            )
    X = np.concatenate([p[0] for p in parts]).astype(np.float32)
    if not np.isfinite(X).all():
        raise ValueError(
            f"{path}: {int((~np.isfinite(X)).any(axis=1).sum())} feature rows "
            "hold NaN or inf; clean them before training"
        )
    names, labels = np.unique(np.concatenate([p[1] for p in parts]), return_inverse=True)
    labels = labels.astype(np.int64)
    if len(parts) == 2:
        is_test = np.arange(X.shape[0]) >= parts[0][0].shape[0]
    else:
        is_test = stratified_holdout(
            labels, test_fraction, rng=np.random.default_rng([seed, STREAM_TEST])
        )
    return DataPool(
        ArrayDataset(X, labels),
        is_test,
        [str(n) for n in names],
        (X.shape[1],),
        info={"source": str(path)},
    )
