"""CIFAR python archives (restricted unpickler) and the JPEG zip layout, on tiny generated files."""

import io
import os
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from magnetdml.data import load_dataset
from magnetdml.data.safe_pickle import safe_load

CLASSES10 = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def batch(n, rng, fine_key=b"labels", n_classes=10, coarse=False):
    d = {
        b"batch_label": b"testing batch",
        b"filenames": [b"x.png"] * n,
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        fine_key: rng.integers(0, n_classes, n).tolist(),
    }
    if coarse:
        d[b"coarse_labels"] = (np.array(d[fine_key]) // 5).tolist()
    return pickle.dumps(d, protocol=2)


def cifar10_files(rng):
    files = {f"data_batch_{i}": batch(3, rng) for i in range(1, 6)}
    files["test_batch"] = batch(4, rng)
    files["batches.meta"] = pickle.dumps(
        {b"label_names": [c.encode() for c in CLASSES10]}, protocol=2
    )
    return files


def write_folder(root, files, folder="cifar-10-batches-py"):
    (root / folder).mkdir(parents=True)
    for name, data in files.items():
        (root / folder / name).write_bytes(data)


def test_folder_layout_loads_batches_in_order(tmp_path):
    files = cifar10_files(np.random.default_rng(0))
    write_folder(tmp_path, files)
    s = load_dataset("cifar10", tmp_path)
    assert (len(s.train), len(s.test), s.input_shape) == (15, 4, (3, 32, 32))
    assert s.class_names == CLASSES10
    first = pickle.loads(files["data_batch_1"])
    assert s.train.labels[:3].tolist() == first[b"labels"]
    x, _ = s.train.get_batch([0])
    red = first[b"data"][0, :1024].reshape(32, 32)  # plane layout: R, G, B
    np.testing.assert_allclose(x[0, 0].numpy(), (red / 255 - 0.4914) / 0.2470, atol=1e-5)
    animal = np.isin(s.train.labels, [2, 3, 4, 5, 6, 7])
    assert np.array_equal(s.train.attributes["superclass"], animal.astype(int))


def test_tar_gz_is_read_without_extracting(tmp_path):
    files = cifar10_files(np.random.default_rng(1))
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    s = load_dataset("cifar10", tmp_path)
    assert len(s.train) == 15 and not (tmp_path / "cifar-10-batches-py").exists()


def test_cifar100_fine_labels_and_coarse_attribute(tmp_path):
    rng = np.random.default_rng(2)
    files = {
        "train": batch(8, rng, b"fine_labels", 100, coarse=True),
        "test": batch(5, rng, b"fine_labels", 100, coarse=True),
        "meta": pickle.dumps(
            {
                b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                b"coarse_label_names": [b"c"] * 20,
            },
            protocol=2,
        ),
    }
    write_folder(tmp_path, files, "cifar-100-python")
    s = load_dataset("cifar100", tmp_path, unseen_classes=0.5, seed=0)
    assert s.num_classes == 100 and s.class_names[7] == "f7"
    for part in (s.train, s.test, s.unseen):
        assert np.array_equal(part.attributes["coarse"], part.labels // 5)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_code():
    with pytest.raises(ValueError, match=r"refusing to load global (posix|os|nt)\.system"):
        safe_load(pickle.dumps({b"data": Evil()}, protocol=2), "evil_batch")
    with pytest.raises(ValueError, match="truncated"):
        safe_load(batch(2, np.random.default_rng(0))[:-50], "cut_batch")


def test_malicious_batch_in_a_folder_is_refused(tmp_path):
    files = cifar10_files(np.random.default_rng(3))
    files["data_batch_2"] = pickle.dumps({b"data": Evil()}, protocol=2)
    write_folder(tmp_path, files)
    with pytest.raises(ValueError, match="data_batch_2: refusing to load global"):
        load_dataset("cifar10", tmp_path)


def write_jpg_zip(path, rng):
    pixels = {}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for split, n in (("train", 2), ("test", 1)):
            for cls in ("cat", "airplane", "truck"):
                for i in range(n):
                    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                    buf = io.BytesIO()
                    Image.fromarray(img).save(buf, format="PNG")  # lossless: exact check
                    name = f"cifar10_jpg/{split}/{cls}/{i:04d}.jpg"
                    z.writestr(name, buf.getvalue())
                    pixels[name] = img
    return pixels


def test_jpg_zip_is_decoded_once_then_cached(tmp_path):
    pixels = write_jpg_zip(tmp_path / "cifar10_jpg.zip", np.random.default_rng(4))
    cache = tmp_path / "cache"
    s = load_dataset("cifar10", tmp_path, cache_dir=cache)
    assert not s.info["cache_hit"] and any(cache.iterdir())
    assert s.class_names == ["airplane", "cat", "truck"]
    assert (len(s.train), len(s.test)) == (6, 3)
    assert s.train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert s.train.attributes["superclass"].tolist() == [0, 0, 1, 1, 0, 0]
    x, _ = s.train.get_batch([2])  # train/cat/0000
    cat = pixels["cifar10_jpg/train/cat/0000.jpg"]
    mean, std = np.array([0.4914, 0.4822, 0.4465]), np.array([0.2470, 0.2435, 0.2616])
    expected = ((cat / 255 - mean) / std).transpose(2, 0, 1)
    np.testing.assert_allclose(x[0].numpy(), expected, atol=1e-5)
    again = load_dataset("cifar10", tmp_path, cache_dir=cache)
    assert again.info["cache_hit"]
    assert np.array_equal(again.train.get_batch(range(6))[0], s.train.get_batch(range(6))[0])


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    write_jpg_zip(tmp_path / "cifar10_jpg.zip", np.random.default_rng(5))
    monkeypatch.setenv("MAGNETDML_CACHE", str(tmp_path / "envcache"))
    load_dataset("cifar10", tmp_path)
    assert any((tmp_path / "envcache").iterdir())


def test_corrupt_jpeg_names_the_member(tmp_path):
    write_jpg_zip(tmp_path / "cifar10_jpg.zip", np.random.default_rng(6))
    with zipfile.ZipFile(tmp_path / "cifar10_jpg.zip", "a") as z:
        z.writestr("cifar10_jpg/test/cat/0009.jpg", b"not a jpeg")
    with pytest.raises(ValueError, match=r"cifar10_jpg.zip!cifar10_jpg/test/cat/0009.jpg"):
        load_dataset("cifar10", tmp_path, use_cache=False)


def test_missing_data_lists_the_layouts(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py/ or cifar-10-python.tar.gz"):
        load_dataset("cifar10", tmp_path)
