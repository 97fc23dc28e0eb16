"""ArrayDataset: per-batch conversion against a slow reference, views, memmap, DataLoader."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from magnetdml.data import ArrayDataset


def make(n=20, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 3, 4, 5), dtype=np.uint8)
    labels = rng.integers(0, 4, size=n)
    return (
        images,
        labels,
        ArrayDataset(
            images, labels, attributes={"g": labels % 2}, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0)
        ),
    )


def reference(images, i):
    """The slow obvious conversion of one image, channel by channel."""
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    return np.stack([(images[i, c].astype(np.float64) / 255 - mean[c]) / std[c] for c in range(3)])


def test_get_batch_matches_reference_and_labels():
    images, labels, ds = make()
    idx = [3, 0, 3, 19]
    x, y = ds.get_batch(idx)
    assert x.dtype == torch.float32 and x.shape == (4, 3, 4, 5)
    assert y.dtype == torch.int64 and y.tolist() == labels[idx].tolist()
    for row, i in enumerate(idx):
        np.testing.assert_allclose(x[row].numpy(), reference(images, i), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", [list, np.array, torch.tensor])
def test_get_batch_accepts_lists_arrays_and_tensors(kind):
    _, _, ds = make()
    x, _ = ds.get_batch(kind([1, 2]))
    assert torch.equal(x, ds.get_batch([1, 2])[0])


def test_getitem_and_dataloader_agree_with_get_batch():
    _, labels, ds = make()
    x, y = ds[5]
    assert isinstance(y, int) and y == labels[5] and x.shape == (3, 4, 5)
    xb, yb = next(iter(DataLoader(ds, batch_size=6, shuffle=False)))
    xr, yr = ds.get_batch(range(6))
    assert torch.equal(xb, xr) and torch.equal(yb, yr)


def test_subset_is_a_view_with_sliced_labels_and_attributes():
    images, labels, ds = make()
    sub = ds.subset([7, 2, 9]).subset([2, 0])  # nested: rows 9 and 7 of the storage
    assert sub.labels.tolist() == labels[[9, 7]].tolist()
    assert sub.attributes["g"].tolist() == (labels[[9, 7]] % 2).tolist()
    np.testing.assert_allclose(
        sub.get_batch([0])[0][0].numpy(), reference(images, 9), rtol=1e-5, atol=1e-6
    )
    assert len(sub) == 2


def test_memmap_storage_gives_the_same_batches(tmp_path):
    images, labels, ds = make()
    np.save(tmp_path / "x.npy", images)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    ds_mm = ArrayDataset(mm, labels, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    idx = [4, 1, 4, 17]
    assert torch.equal(ds_mm.get_batch(idx)[0], ds.get_batch(idx)[0])
    assert torch.equal(ds_mm.subset([3, 4]).get_batch([1])[0], ds.get_batch([4])[0])


def test_float_features_are_returned_unscaled():
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    ds = ArrayDataset(X, np.array([0, 1, 0, 1]))
    x, y = ds.get_batch([2])
    assert torch.equal(x, torch.tensor([[6.0, 7.0, 8.0]])) and y.tolist() == [0]


def test_to_device_keeps_values():
    _, _, ds = make()
    before = ds.get_batch([1, 2])[0]
    assert torch.equal(ds.to("cpu").get_batch([1, 2])[0], before)


def test_tensor_storage_path_matches_the_numpy_path():
    """The path used after .to(a GPU) (torch storage), exercised here on the CPU."""
    images, labels, ds = make()
    sub = ds.subset([4, 8, 1])
    on_tensor = sub.subset([0, 1, 2])
    on_tensor._data = torch.from_numpy(images)  # what .to("cuda") stores
    x, y = on_tensor.get_batch([2, 0])
    torch.testing.assert_close(x, sub.get_batch([2, 0])[0])
    assert y.tolist() == labels[[1, 4]].tolist()
