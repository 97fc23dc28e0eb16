"""A user's own tree: class level, levels above as attributes, grey stays grey, size from data."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from magnetdml.data import load_dataset
from magnetdml.data.coarse import collapse_pairs
from magnetdml.data.image_tree import level_attributes
from magnetdml.experiments.levels import level_metrics

TREE = {
    "Korean": ("character01", "character02"),
    "Latin": ("character01", "character02", "character03"),
}


def make_tree(root, mode="1", per_class=4, size=(20, 18)):
    """``root/<alphabet>/<character>/*.png`` of 1-bit (or ``mode``) images."""
    rng = np.random.default_rng(0)
    for alphabet, characters in TREE.items():
        for character in characters:
            folder = root / alphabet / character
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = (rng.random(size) < 0.3).astype(np.uint8) * 255
                Image.fromarray(pixels).convert(mode).save(folder / f"{i}.png")
    return root


def test_class_level_first_leaf_and_depth(tmp_path):
    make_tree(tmp_path)
    first = load_dataset("image-folder", tmp_path, size=8)
    assert first.class_names == ["Korean", "Latin"] and first.train.attributes == {}
    leaf = load_dataset("image-folder", tmp_path, size=8, class_level="leaf")
    assert leaf.class_names == [
        "Korean/character01",
        "Korean/character02",
        "Latin/character01",
        "Latin/character02",
        "Latin/character03",
    ]
    assert (
        load_dataset("image-folder", tmp_path, size=8, class_level=2).class_names
        == leaf.class_names
    )
    assert leaf.info["attribute_names"] == {"parent": ["Korean", "Latin"]}
    for part in (leaf.train, leaf.test):  # parent = the alphabet of each image's class
        names = [leaf.class_names[y].split("/")[0] for y in part.labels]
        assert [
            leaf.info["attribute_names"]["parent"][a] for a in part.attributes["parent"]
        ] == names


def test_bad_class_levels_are_one_line(tmp_path):
    make_tree(tmp_path)
    with pytest.raises(
        ValueError, match="class_level must be 'first', 'leaf' or a folder depth >= 1"
    ):
        load_dataset("image-folder", tmp_path, class_level="deepest")
    with pytest.raises(ValueError, match=r"sits 2 folder\(s\) below .* class_level=3 needs"):
        load_dataset("image-folder", tmp_path, class_level=3)


def test_levels_of_a_ragged_tree():
    names = ["a/x/1", "a/x/2", "a/y/1", "b/1"]
    attributes, groups = level_attributes(names, np.arange(4))
    assert groups == {"level_1": ["a", "b"], "parent": ["a/x", "a/y", "b"]}
    assert attributes["level_1"].tolist() == [0, 0, 0, 1]
    assert attributes["parent"].tolist() == [0, 0, 1, 2]


def test_a_grey_tree_loads_as_one_channel_and_its_size_from_the_images(tmp_path):
    make_tree(tmp_path, mode="1", size=(20, 18))
    s = load_dataset("image-folder", tmp_path, class_level="leaf")
    assert s.input_shape == (1, 20, 18)  # median size, under the cap
    x, _ = s.train.get_batch([0])
    assert x.shape == (1, 1, 20, 18)
    capped = load_dataset("image-folder", tmp_path, class_level="leaf", max_size=10)
    assert capped.input_shape == (1, 10, 9)  # longer side 10, aspect kept


def test_a_mixed_tree_is_rgb_and_says_so_once(tmp_path, caplog):
    make_tree(tmp_path)
    Image.new("RGB", (20, 18), (200, 30, 30)).save(tmp_path / "Latin" / "character01" / "c.jpg")
    with caplog.at_level(logging.WARNING):
        s = load_dataset("image-folder", tmp_path, class_level="leaf")
    assert s.input_shape[0] == 3
    assert caplog.text.count("1 colour images; all are read as RGB") == 1
    assert load_dataset("image-folder", tmp_path, channels=1).input_shape[0] == 1


def test_collapse_pairs_on_a_tree_uses_the_parent_folder(tmp_path):
    make_tree(tmp_path)
    s = load_dataset("image-folder", tmp_path, size=8, class_level="leaf")
    coarse = collapse_pairs(s, seed=0)
    assert coarse.class_names == ["Korean", "Latin"] and coarse.info["coarse_by"] == "parent"
    assert np.array_equal(coarse.train.labels, s.train.attributes["parent"])
    assert np.array_equal(coarse.train.attributes["fine"], s.train.labels)


def test_level_metrics_against_a_brute_force_count():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 5)  # 6 classes, 2 per parent
    parent = labels // 2
    emb = rng.normal(size=(30, 4)) * 0.1 + parent[:, None]  # parents far apart
    scores = level_metrics(emb, labels, {"parent": parent})["parent"]
    d = ((emb[:, None] - emb[None]) ** 2).sum(-1)
    d[labels[:, None] == labels[None]] = np.inf  # neighbours of other classes
    nearest = np.argsort(d, axis=1)[:, :4]
    assert scores["concentration_at_4"] == pytest.approx(
        np.mean(parent[nearest] == parent[:, None])
    )
    assert scores["nmi"] == pytest.approx(1.0)
    assert scores["chance_concentration"] == pytest.approx(5 / 25)


@pytest.mark.slow
def test_a_run_on_a_tree_keeps_its_reading_in_its_config(tmp_path, capsys, monkeypatch):
    """Leaf classes, grey: training pins the reading; evaluate, cluster (NMI against the
    parent) and the hierarchy measure (collapse_pairs onto the parent) work on it."""
    from magnetdml.cli import main
    from magnetdml.experiments.hierarchy import measure_run

    make_tree(tmp_path / "tree", per_class=6, size=(10, 10))
    monkeypatch.chdir(tmp_path)
    common = [
        "--dataset",
        "image-folder",
        "--data-dir",
        "tree",
        "--epochs",
        "1",
        "--train.iterations_per_epoch",
        "3",
        "--train.threads",
        "1",
        "--quiet",
        "--model.embedding_dim",
        "8",
        "--eval.plots",
        "false",
        "--index.clusters_per_class",
        "1",
        "--sampler.clusters_per_batch",
        "2",
    ]
    assert main(["train", *common, "--data.options", "{class_level: leaf}", "--out", "leaf"]) == 0
    options = json.loads((tmp_path / "leaf" / "config.json").read_text())["data"]["options"]
    assert json.loads(options) == {"channels": 1, "class_level": "leaf", "size": [10, 10]}
    capsys.readouterr()
    assert main(["evaluate", "leaf", "--no-write"]) == 0
    assert "test/parent" in capsys.readouterr().out
    assert (
        main(
            [
                "cluster",
                "leaf",
                "--dataset",
                "image-folder",
                "--data-dir",
                "tree",
                "--k",
                "2",
                "--out",
                "clusters",
            ]
        )
        == 0
    )
    assert "against parent (2 groups): nmi" in capsys.readouterr().out
    assert (
        main(
            [
                "train",
                *common,
                "--data.options",
                "{class_level: leaf}",
                "--data.collapse_pairs",
                "true",
                "--out",
                "coarse",
            ]
        )
        == 0
    )
    capsys.readouterr()
    fine = measure_run(tmp_path / "coarse")
    assert 0 <= fine["knn_error_at_1"] <= 1
    assert main(["evaluate", "coarse", "--no-write"]) == 0
    assert "test/fine" in capsys.readouterr().out


def test_pinning_is_idempotent_and_leaves_other_datasets_alone(tmp_path):
    """A resumed or compared run pins its config again: the same text, or it would be refused
    as a different run."""
    from magnetdml.training import apply_overrides
    from magnetdml.training.config import Config
    from magnetdml.training.setup import pin_data_options

    make_tree(tmp_path)
    config = apply_overrides(
        Config(),
        {
            "data.name": "image-folder",
            "data.data_dir": str(tmp_path),
            "data.options": "{class_level: leaf, max_size: 12}",
        },
    )
    pinned = pin_data_options(config)
    assert json.loads(pinned.data.options) == {
        "channels": 1,
        "class_level": "leaf",
        "size": [12, 11],
    }
    assert pin_data_options(pinned) == pinned
    assert pin_data_options(Config()) == Config()
