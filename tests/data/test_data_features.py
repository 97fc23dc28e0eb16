"""Feature-vector datasets from .npz and .csv files."""

import numpy as np
import pytest

from magnetdml.data import load_dataset


def test_npz_with_explicit_test_set(tmp_path):
    rng = np.random.default_rng(0)
    X, Xt = rng.normal(size=(12, 5)), rng.normal(size=(4, 5))
    y, yt = np.repeat([3, 7, 9], 4), np.array([3, 7, 9, 9])
    np.savez(tmp_path / "f.npz", X=X, y=y, X_test=Xt, y_test=yt)
    s = load_dataset("features", tmp_path / "f.npz")
    assert s.input_shape == (5,) and s.class_names == ["3", "7", "9"]
    assert (len(s.train), len(s.test)) == (12, 4)
    x, lab = s.test.get_batch([3])
    np.testing.assert_allclose(x[0].numpy(), Xt[3].astype(np.float32))
    assert lab.tolist() == [2]


def test_npz_without_test_gets_a_stratified_split(tmp_path):
    X = np.arange(40, dtype=np.float32).reshape(20, 2)
    np.savez(tmp_path / "f.npz", X=X, y=np.repeat([0, 1], 10))
    s = load_dataset("features", tmp_path / "f.npz", test_fraction=0.2, val_fraction=0.25)
    assert np.bincount(s.test.labels).tolist() == [2, 2]
    assert np.bincount(s.val.labels).tolist() == [2, 2]


def test_csv_label_column_and_numeric_label_order(tmp_path):
    lines = ["a,label,b"] + [f"{i},{lab},{2 * i}" for i, lab in enumerate([10, 2, 2, 10] * 2)]
    (tmp_path / "f.csv").write_text("\n".join(lines) + "\n")
    s = load_dataset("features", tmp_path / "f.csv", test_fraction=0.25)
    assert s.class_names == ["2", "10"] and s.input_shape == (2,)  # numeric, not text order
    x, y = s.train.get_batch(range(len(s.train)))
    for row, lab in zip(x.numpy(), y.numpy(), strict=True):
        assert row[1] == 2 * row[0]
        assert lab == (0 if [10, 2, 2, 10][int(row[0]) % 4] == 2 else 1)


def test_csv_last_column_string_labels(tmp_path):
    (tmp_path / "f.csv").write_text("x,y,cls\n1,2,cat\n3,4,dog\n5,6,cat\n7,8,dog\n")
    s = load_dataset("features", tmp_path / "f.csv", test_fraction=0.5)
    assert s.class_names == ["cat", "dog"] and len(s.test) == 2


def test_bad_files_are_explained(tmp_path):
    np.savez(tmp_path / "f.npz", X=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="missing \\['y'\\]"):
        load_dataset("features", tmp_path / "f.npz")
    (tmp_path / "f.csv").write_text("x,label\nabc,1\n")
    with pytest.raises(ValueError, match="feature columns must be numbers"):
        load_dataset("features", tmp_path / "f.csv")
    np.savez(tmp_path / "n.npz", X=np.array([[np.nan, 1.0]]), y=np.array([0]))
    with pytest.raises(ValueError, match="NaN or inf"):
        load_dataset("features", tmp_path / "n.npz")
    with pytest.raises(ValueError, match="must be a .npz or .csv"):
        load_dataset("features", tmp_path)
