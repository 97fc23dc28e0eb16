"""Omniglot from a tiny npz like the staged one and from the official folder/zip layout."""

import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from magnetdml.data import load_dataset

ALPHABETS = ["Alpha", "Beta", "Delta", "Gamma"]  # sorted, as in the real npz


def tiny_arrays(per_class=6, chars=2, rng=None, size=21):
    rng = rng or np.random.default_rng(0)
    n_classes = len(ALPHABETS) * chars
    images = np.where(rng.random((n_classes * per_class, size, size)) < 0.2, 0, 255)
    return {
        "images": images.astype(np.uint8),
        "labels": np.repeat(np.arange(n_classes), per_class).astype(np.int16),
        "alphabet": np.repeat(ALPHABETS, chars),
        "character": np.array([f"character{i % chars + 1:02d}" for i in range(n_classes)]),
    }


def write_npz(tmp_path, **kw):
    arrays = tiny_arrays(**kw)
    np.savez_compressed(tmp_path / "omniglot_background.npz", **arrays)
    return arrays


def write_tree(root, arrays, part="background", as_zip=False):
    """Write arrays as the official images_<part>/<alphabet>/<character>/<id>_<drawer>.png."""
    files = {}
    for i, (img, lab) in enumerate(zip(arrays["images"], arrays["labels"], strict=True)):
        name = (
            f"images_{part}/{arrays['alphabet'][lab]}/{arrays['character'][lab]}/"
            f"{lab:04d}_{int((arrays['labels'][:i] == lab).sum()) + 1:02d}.png"
        )
        files[name] = Image.fromarray(img).convert("1")
    if as_zip:
        with zipfile.ZipFile(root / f"images_{part}.zip", "w") as z:
            for name, im in files.items():
                with z.open(name, "w") as f:
                    im.save(f, format="PNG")
    else:
        for name, im in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            im.save(root / name)


def test_npz_is_inverted_resized_and_split_per_class(tmp_path):
    arrays = write_npz(tmp_path)
    s = load_dataset("omniglot", tmp_path, size=7, test_per_class=2, use_cache=False)
    assert s.input_shape == (1, 7, 7) and s.num_classes == 8
    assert len(s.test) == 8 * 2 and len(s.train) == 8 * 4
    assert np.bincount(s.test.labels).tolist() == [2] * 8
    assert s.class_names[3] == "Beta/character02"
    assert np.array_equal(s.train.attributes["alphabet"], s.train.labels // 2)
    # Reference: invert, then antialiased bilinear resize of each image on its own.
    full = load_dataset("omniglot", tmp_path, size=7, test_per_class=0, use_cache=False)
    x, _ = full.train.get_batch([5])
    one = torch.from_numpy(255.0 - arrays["images"][5].astype(np.float32))[None, None]
    ref = F.interpolate(one, size=(7, 7), mode="bilinear", antialias=True).round() / 255
    np.testing.assert_allclose(x[0, 0].numpy(), ((ref[0, 0] - 0.0779) / 0.2155).numpy(), atol=1e-5)


def test_unseen_alphabets_hold_out_whole_alphabets(tmp_path):
    write_npz(tmp_path)
    s = load_dataset("omniglot", tmp_path, size=7, unseen_alphabets=["Gamma"], use_cache=False)
    assert set(s.unseen.labels) == {6, 7}
    assert set(s.unseen.attributes["alphabet"]) == {3}
    assert not {6, 7} & (set(s.train.labels) | set(s.test.labels))
    frac = load_dataset("omniglot", tmp_path, size=7, unseen_alphabets=0.5, seed=1, use_cache=False)
    assert len(set(frac.unseen.attributes["alphabet"])) == 2
    assert len(set(frac.train.attributes["alphabet"])) == 2
    with pytest.raises(ValueError, match="unknown class name 'Klingon'"):
        load_dataset("omniglot", tmp_path, unseen_alphabets=["Klingon"], use_cache=False)


@pytest.mark.parametrize("as_zip", [False, True])
def test_official_layout_matches_the_npz(tmp_path, as_zip):
    arrays = tiny_arrays()
    np.savez(tmp_path / "omniglot_background.npz", **arrays)
    tree = tmp_path / "tree"
    tree.mkdir()
    write_tree(tree, arrays, as_zip=as_zip)
    a = load_dataset("omniglot", tmp_path, size=105 // 5, use_cache=False)
    b = load_dataset("omniglot", tree, size=105 // 5, use_cache=False)
    assert a.class_names == b.class_names
    assert torch.equal(
        a.train.get_batch(range(len(a.train)))[0], b.train.get_batch(range(len(b.train)))[0]
    )


def test_evaluation_set_classes_are_all_unseen(tmp_path):
    write_tree(tmp_path, tiny_arrays())
    write_tree(tmp_path, tiny_arrays(chars=1, rng=np.random.default_rng(9)), part="evaluation")
    s = load_dataset("omniglot", tmp_path, size=7, evaluation=True, use_cache=False)
    assert s.num_classes == 8 + 4
    assert set(s.unseen.labels) == set(range(8, 12))
    assert set(s.train.labels) == set(range(8))


def test_cached_second_load_is_identical(tmp_path):
    write_npz(tmp_path)
    a = load_dataset("omniglot", tmp_path, size=7, cache_dir=tmp_path / "c")
    b = load_dataset("omniglot", tmp_path, size=7, cache_dir=tmp_path / "c")
    assert not a.info["cache_hit"] and b.info["cache_hit"]
    assert torch.equal(
        a.test.get_batch(range(len(a.test)))[0], b.test.get_batch(range(len(b.test)))[0]
    )


def test_missing_source_explains_the_layouts(tmp_path):
    with pytest.raises(FileNotFoundError, match="omniglot_background.npz or images_background"):
        load_dataset("omniglot", tmp_path)


def test_drawer_split_holds_out_the_same_drawers_of_every_character(tmp_path):
    arrays = write_npz(tmp_path, per_class=6)
    s = load_dataset(
        "omniglot", tmp_path, size=7, test_drawers=[5, 6], val_drawers=[4], use_cache=False
    )
    full = load_dataset("omniglot", tmp_path, size=7, test_per_class=0, use_cache=False)
    # per class: drawers 1-3 train, 4 val, 5-6 test; images in storage order within a class
    assert np.bincount(s.train.labels).tolist() == [3] * 8
    assert np.bincount(s.val.labels).tolist() == [1] * 8
    assert np.bincount(s.test.labels).tolist() == [2] * 8
    x_test, y_test = s.test.get_batch([0, 1])
    x_full, _ = full.train.get_batch([4, 5])  # class 0's drawings 5 and 6
    assert y_test.tolist() == [0, 0] and torch.equal(x_test, x_full)
    assert len(arrays["labels"]) == len(s.train) + len(s.val) + len(s.test)


def test_alphabets_keep_a_relabelled_subset(tmp_path):
    write_npz(tmp_path, per_class=6)
    s = load_dataset(
        "omniglot", tmp_path, size=7, alphabets=["Gamma", "Beta"], test_drawers=[6], use_cache=False
    )
    assert s.num_classes == 4
    assert s.class_names == [
        "Beta/character01",
        "Beta/character02",
        "Gamma/character01",
        "Gamma/character02",
    ]
    assert sorted(set(s.train.labels.tolist())) == [0, 1, 2, 3]
    # the alphabet attribute keeps the ids of the whole background set (Beta 1, Gamma 3)
    assert sorted(set(s.train.attributes["alphabet"].tolist())) == [1, 3]
    full = load_dataset("omniglot", tmp_path, size=7, test_drawers=[6], use_cache=False)
    x_sub, _ = s.train.get_batch([0])
    x_full, y_full = full.train.get_batch([2 * 5])  # Beta/character01's first drawing
    assert y_full.item() == 2 and torch.equal(x_sub, x_full)
    by_id = load_dataset("omniglot", tmp_path, size=7, alphabets=[1, 3], use_cache=False)
    assert by_id.class_names == s.class_names


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"test_drawers": [0]}, "test_drawers entry must be >= 1"),
        ({"test_drawers": [21]}, "drawers 1..20 only"),
        ({"test_drawers": 5}, "list of drawer numbers"),
        ({"val_drawers": list(range(1, 21))}, "between 1 and 19"),
        ({"test_drawers": [5], "val_drawers": [5]}, "share drawers"),
        ({"alphabets": ["Klingon"]}, "unknown class name 'Klingon'"),
        ({"alphabets": []}, "non-empty list of alphabet names"),
    ],
)
def test_drawer_and_alphabet_options_are_checked(tmp_path, options, message):
    write_npz(tmp_path)
    with pytest.raises((ValueError, TypeError), match=message):
        load_dataset("omniglot", tmp_path, size=7, use_cache=False, **options)


def test_evaluation_set_from_an_npz(tmp_path):
    write_npz(tmp_path)
    evaluation = tiny_arrays(chars=1, rng=np.random.default_rng(9))
    evaluation["alphabet"] = np.array(["Aurek", "Besh", "Cresh", "Dorn"])
    np.savez_compressed(tmp_path / "omniglot_evaluation.npz", **evaluation)
    s = load_dataset("omniglot", tmp_path, size=7, evaluation=True, use_cache=False)
    assert s.num_classes == 8 + 4 and set(s.unseen.labels) == set(range(8, 12))
    assert s.class_names[8] == "Aurek/character01"
    (tmp_path / "omniglot_evaluation.npz").unlink()
    with pytest.raises(FileNotFoundError, match="or omniglot_evaluation.npz"):
        load_dataset("omniglot", tmp_path, size=7, evaluation=True, use_cache=False)


def test_float_images_are_refused_not_cast(tmp_path):
    arrays = tiny_arrays()
    arrays["images"] = arrays["images"].astype(np.float32) / 255  # 0..1 floats
    np.savez_compressed(tmp_path / "omniglot_background.npz", **arrays)
    with pytest.raises(
        ValueError,
        match=r"images must be uint8 grey levels 0..255 .* got "
        r"float32 in \[0, 1\]",
    ):
        load_dataset("omniglot", tmp_path, size=7, use_cache=False)
