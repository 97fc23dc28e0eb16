"""``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes).

The default job's dataset: no download and no ``data_dir``. The pixel values are 0..16, so the
images are scaled by 1/16 (not 1/255) before standardising; the test split is a seeded
stratified 25% of each class.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from .._validation import check_float
from .base import NORMALISATION, ArrayDataset
from .loading import DATASETS
from .splits import STREAM_TEST, DataPool, stratified_holdout


@DATASETS.register("digits")
def load_digits_pool(data_dir=None, *, seed: int = 0, test_fraction: float = 0.25) -> DataPool:
    """All 1,797 digits as uint8 ``(N, 1, 8, 8)`` with values 0..16; ``test_fraction`` per class."""
    test_fraction = check_float("test_fraction", test_fraction, strict_minimum=0.0, maximum=0.9)
    bunch = load_digits()
    images = bunch.images.astype(np.uint8)[:, None]  # (N, 1, 8, 8), 0..16
    labels = bunch.target.astype(np.int64)
    mean, std = NORMALISATION["digits"]
    is_test = stratified_holdout(
        labels, test_fraction, rng=np.random.default_rng([seed, STREAM_TEST])
    )
    return DataPool(
        ArrayDataset(images, labels, pixel_max=16.0, mean=mean, std=std),
        is_test,
        [str(i) for i in range(10)],
        (1, 8, 8),
        info={"source": "sklearn"},
    )
