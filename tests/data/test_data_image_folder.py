"""The generic root/<class>/<image> layout: CSV splits, lazy decoding, corrupt files."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from magnetdml.data import ImageFileDataset, load_dataset

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def make_tree(root, per_class=4, classes=("cardinal", "albatross", "wren"), size=(10, 12)):
    rng = np.random.default_rng(0)
    pixels = {}
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / c / f"{i:03d}.png")
            pixels[f"{c}/{i:03d}.png"] = img
    return pixels


def test_folder_without_csv_is_lazy_and_stratified(tmp_path):
    pixels = make_tree(tmp_path)
    s = load_dataset("image-folder", tmp_path, size=(10, 12), test_fraction=0.25)
    assert isinstance(s.train, ImageFileDataset)
    assert s.class_names == ["albatross", "cardinal", "wren"] and s.input_shape == (3, 10, 12)
    assert np.bincount(s.test.labels).tolist() == [1, 1, 1]
    i = int(np.flatnonzero(s.train.labels == 1)[0])
    x, y = s.train.get_batch([i])
    img = pixels[f"cardinal/{s.train.paths[i].name}"]
    np.testing.assert_allclose(
        x[0].numpy(), ((img / 255 - MEAN) / STD).transpose(2, 0, 1), atol=1e-5
    )
    assert y.tolist() == [1] and x.dtype == torch.float32


def test_resize_gives_the_requested_shape(tmp_path):
    make_tree(tmp_path)
    s = load_dataset("image-folder", tmp_path, size=8)
    x, _ = s.train.get_batch([0, 1])
    assert x.shape == (2, 3, 8, 8)


def test_csv_split_file_with_labels_and_val(tmp_path):
    make_tree(tmp_path)
    with open(tmp_path / "split.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        for c in ("cardinal", "albatross", "wren"):
            w.writerows(
                [
                    [f"{c}/000.png", "", "test"],
                    [f"{c}/001.png", "", "val"],
                    [f"{c}/002.png", "", "train"],
                ]
            )  # 003.png is not listed
        w.writerow(["wren/003.png", "sparrow", "train"])  # label column overrides
    s = load_dataset("image-folder", tmp_path, split_file="split.csv", size=(10, 12))
    assert s.class_names == ["albatross", "cardinal", "sparrow", "wren"]
    assert (len(s.train), len(s.test), len(s.val)) == (4, 3, 3)
    assert all(p.name == "000.png" for p in s.test.paths)
    assert all(p.name == "001.png" for p in s.val.paths)


def test_bad_csv_is_explained(tmp_path):
    make_tree(tmp_path)
    (tmp_path / "s.csv").write_text("file,split\nwren/000.png,train\n")
    with pytest.raises(ValueError, match="columns path,split"):
        load_dataset("image-folder", tmp_path, split_file="s.csv")
    (tmp_path / "s.csv").write_text("path,split\nwren/000.png,holdout\n")
    with pytest.raises(ValueError, match="found \\['holdout'\\]"):
        load_dataset("image-folder", tmp_path, split_file="s.csv")


def test_corrupt_file_raises_naming_it_or_is_skipped_and_counted(tmp_path, caplog):
    make_tree(tmp_path)
    (tmp_path / "wren" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ValueError, match="broken.png"):
        load_dataset("image-folder", tmp_path)
    s = load_dataset("image-folder", tmp_path, skip_corrupt=True)
    assert len(s.info["skipped"]) == 1 and s.info["skipped"][0].endswith("broken.png")
    assert s.train.skipped == s.info["skipped"]
    assert len(s.train) + len(s.test) == 12
    assert "skipped 1 unreadable" in caplog.text


def test_corruption_missed_by_the_check_names_the_file_at_read_time(tmp_path):
    make_tree(tmp_path)
    s = load_dataset("image-folder", tmp_path, check="none")
    s.train.paths[0].write_bytes(b"garbage")
    with pytest.raises(ValueError, match=f"cannot decode image {s.train.paths[0]}"):
        s.train.get_batch([0])


def test_bad_options_name_the_parameter(tmp_path):
    make_tree(tmp_path)
    with pytest.raises(ValueError, match="check must be one of"):
        load_dataset("image-folder", tmp_path, check="deep")
    with pytest.raises(ValueError, match="size must be >= 1"):
        load_dataset("image-folder", tmp_path, size=0)


def test_split_file_rows_naming_missing_images_are_refused(tmp_path):
    """They used to be dropped: a CSV whose paths were all wrong for one class lost the class."""
    make_tree(tmp_path)
    (tmp_path / "s.csv").write_text("path,split\nwren/000.png,train\nwren/099.png,test\n")
    with pytest.raises(
        ValueError,
        match=r"1 row\(s\) name images that are not under .*"
        r"wren/099.png",
    ):
        load_dataset("image-folder", tmp_path, split_file="s.csv")
