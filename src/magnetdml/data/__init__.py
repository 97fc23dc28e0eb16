"""Datasets, seeded class-disjoint splits and batched augmentation (layer 4).

Interface the training loop relies on::

    class LabelledDataset(torch.utils.data.Dataset):
        labels: np.ndarray                  # (N,) int64 class ids 0..num_classes-1 of the
                                            # WHOLE dataset (seen and unseen never collide)
        attributes: dict[str, np.ndarray]   # (N,) int64 groupings training never sees:
                                            # omniglot "alphabet", cifar10 "superclass"
                                            # (1 animal / 0 vehicle), cifar100 "coarse"
        def __len__(self) -> int
        def __getitem__(self, i) -> tuple[torch.Tensor, int]       # (C,H,W) / (F,) float32
        def get_batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]
                                            # (B,*shape) float32, (B,) int64; in-memory sets
                                            # gather rows of one uint8 tensor (fast path)
        def subset(self, indices) -> LabelledDataset

    @dataclass
    class DatasetSplits:
        name; train; test (seen classes, held-out examples); val | None; unseen | None
        num_classes; input_shape ((C,H,W) or (F,)); class_names; info (how it was loaded)

    load_dataset(name, data_dir=None, *, seed=0, val_fraction=0.0, unseen_classes=None,
                 **options) -> DatasetSplits
    DATASETS   # registry: digits, mnist, fashion-mnist, cifar10, cifar100, omniglot,
               # image-folder, features

Pixels: uint8 in memory, per batch ``x = (pixels / 255 - mean_c) / std_c`` (digits: / 16) with
the fixed per-dataset channel statistics in :data:`NORMALISATION`:
digits 0.3053/0.3760; mnist 0.1307/0.3081; fashion-mnist 0.2860/0.3530; omniglot (inverted,
28x28) 0.0779/0.2155; cifar10 (0.4914, 0.4822, 0.4465)/(0.2470, 0.2435, 0.2616); cifar100
(0.5071, 0.4865, 0.4409)/(0.2673, 0.2564, 0.2762); image-folder ImageNet
(0.485, 0.456, 0.406)/(0.229, 0.224, 0.225). Feature vectors are returned unscaled.

Augmentation (paper §4): :class:`RandomRescaleCrop` (rescale up to 30%, crop back, jitter) and
:func:`test_time_average` (mean embedding of 16 augmented copies).
"""

from . import cifar, digits, features, idx, image_folder, omniglot  # noqa: F401  (register)
from .augment import RandomRescaleCrop, rescale_crop, test_time_average
from .base import NORMALISATION, ArrayDataset, LabelledDataset
from .image_folder import ImageFileDataset
from .loading import DATASETS, load_dataset
from .splits import DataPool, DatasetSplits, split_pool, stratified_holdout

__all__ = [
    "DATASETS",
    "NORMALISATION",
    "ArrayDataset",
    "DataPool",
    "DatasetSplits",
    "ImageFileDataset",
    "LabelledDataset",
    "RandomRescaleCrop",
    "load_dataset",
    "rescale_crop",
    "split_pool",
    "stratified_holdout",
    "test_time_average",
]
