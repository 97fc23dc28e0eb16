"""MNIST / Fashion-MNIST IDX parsing on tiny generated files; never the network."""

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from magnetdml.data import idx, load_dataset

# the real file, when MAGNETDML_DATA_ROOT names a folder holding fashion-mnist/
REAL = (
    Path(os.environ.get("MAGNETDML_DATA_ROOT", "/nonexistent"))
    / "fashion-mnist"
    / "train-images-idx3-ubyte.gz"
)


def idx_bytes(array, magic):
    return struct.pack(f">{1 + array.ndim}i", magic, *array.shape) + array.tobytes()


def write_set(root, n_train=6, n_test=4, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    root.mkdir(exist_ok=True)
    for stem, a in arrays.items():
        magic = 2051 if "images" in stem else 2049
        (root / f"{stem}.gz").write_bytes(gzip.compress(idx_bytes(a, magic)))
    return arrays


def test_loads_train_and_test_in_order(tmp_path):
    arrays = write_set(tmp_path)
    s = load_dataset("mnist", tmp_path)
    assert s.input_shape == (1, 28, 28) and len(s.train) == 6 and len(s.test) == 4
    assert s.train.labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    x, _ = s.test.get_batch([1])
    expected = (arrays["t10k-images-idx3-ubyte"][1] / 255 - 0.1307) / 0.3081
    np.testing.assert_allclose(x[0, 0].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_fashion_uses_its_class_names(tmp_path):
    write_set(tmp_path)
    assert load_dataset("fashion-mnist", tmp_path).class_names[9] == "Ankle boot"


def test_missing_file_names_the_path_and_the_fix(tmp_path):
    write_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz not found.*download"):
        load_dataset("mnist", tmp_path)


def test_truncated_gzip_names_the_file(tmp_path):
    write_set(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz is corrupt or truncated"):
        load_dataset("mnist", tmp_path)


def test_size_mismatch_with_header_names_the_file(tmp_path):
    write_set(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))  # valid gzip, short payload
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz holds .* truncated"):
        load_dataset("mnist", tmp_path)


def test_wrong_magic_and_count_mismatch(tmp_path):
    write_set(tmp_path)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    labels.write_bytes((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes())  # 4 != 6
    with pytest.raises(ValueError, match="6 images but 4 labels"):
        load_dataset("mnist", tmp_path)
    labels.write_bytes((tmp_path / "t10k-images-idx3-ubyte.gz").read_bytes())
    with pytest.raises(ValueError, match="magic number 2051, expected 2049"):
        load_dataset("mnist", tmp_path)


def test_uncompressed_idx_files_are_accepted(tmp_path):
    write_set(tmp_path)
    for gz in tmp_path.glob("*.gz"):
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    assert len(load_dataset("mnist", tmp_path).train) == 6


def test_download_verifies_md5_with_a_fake_fetch(tmp_path, monkeypatch):
    source = tmp_path / "server"
    write_set(source)
    md5s = tuple(idx.md5sum(source / f"{stem}.gz") for stem in idx.FILES)
    monkeypatch.setitem(idx.SOURCES, "mnist", dict(idx.SOURCES["mnist"], md5=md5s))
    calls = []

    def fake_fetch(url, dest):
        calls.append(url)
        dest.write_bytes((source / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(idx, "fetch", fake_fetch)
    s = load_dataset("mnist", tmp_path / "dl", download=True)
    assert len(s.train) == 6 and len(calls) == 4
    load_dataset("mnist", tmp_path / "dl", download=True)  # verified files: no refetch
    assert len(calls) == 4
    bad = tuple("0" * 32 for _ in md5s)
    monkeypatch.setitem(idx.SOURCES, "mnist", dict(idx.SOURCES["mnist"], md5=bad))
    with pytest.raises(RuntimeError, match="could not download train-images.*md5"):
        load_dataset("mnist", tmp_path / "dl2", download=True)


@pytest.mark.skipif(not REAL.exists(), reason="shared Fashion-MNIST not present")
def test_real_fashion_mnist_header():
    with gzip.open(REAL, "rb") as f:
        assert struct.unpack(">4i", f.read(16)) == (2051, 60000, 28, 28)
