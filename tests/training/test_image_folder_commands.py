"""Every inference command on a run trained from a user's image folder (issue: own images).

The folder has nested class folders, PNG and JPEG files, grey, RGB, RGBA and palette images,
a file name with a space, and is reached by a relative path (``../photos``), as a new user's.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from magnetdml.cli import main

CLASSES = {
    "animals/cat": (220, 40, 40),
    "animals/dog": (40, 220, 40),
    "plants/fern": (40, 40, 220),
    "plants/oak": (220, 220, 40),
}


def make_photos(root):
    rng = np.random.default_rng(0)
    for c, colour in CLASSES.items():
        folder = root / c
        folder.mkdir(parents=True)
        for i in range(8):
            h, w = int(rng.integers(9, 14)), int(rng.integers(9, 14))
            pixels = np.clip(np.array(colour) + rng.normal(0, 20, (h, w, 3)), 0, 255)
            image = Image.fromarray(pixels.astype(np.uint8))
            kind = i % 4
            if kind == 0:
                image.save(folder / f"photo {i}.png")  # a space in the name
            elif kind == 1:
                image.convert("L").save(folder / f"grey{i}.jpg")
            elif kind == 2:
                image.convert("RGBA").save(folder / f"alpha{i}.png")
            else:
                image.convert("P").save(folder / f"palette{i}.png")
    (root / "animals" / "cat" / ".hidden.png").write_bytes(b"not an image")  # ignored


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    base = tmp_path_factory.mktemp("own")
    make_photos(base / "photos")
    (base / "work").mkdir()
    old = os.getcwd()
    os.chdir(base / "work")
    try:
        assert (
            main(
                [
                    "train",
                    "--dataset",
                    "image-folder",
                    "--data-dir",
                    "../photos",
                    "--data.options",
                    "{class_level: leaf}",
                    "--epochs",
                    "2",
                    "--train.iterations_per_epoch",
                    "4",
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
                    "3",
                    "--out",
                    "run",
                ]
            )
            == 0
        )
    finally:
        os.chdir(old)
    return base / "work"


FOLDER = ["--dataset", "image-folder", "--data-dir", "../photos"]


@pytest.mark.slow
def test_the_run_reads_the_tree_as_configured(work):
    config = json.loads((work / "run" / "config.json").read_text())
    sizes = [Image.open(p).size[::-1] for p in (work.parent / "photos").rglob("[!.]*.*g")]
    median = [round(float(v)) for v in np.median(np.array(sizes), axis=0)]  # (H, W), < 64
    assert json.loads(config["data"]["options"]) == {
        "channels": 3,
        "class_level": "leaf",
        "size": median,
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "inputs",
    [
        ["--images", "../photos"],
        ["--images", "../photos/animals/cat/photo 0.png", "../photos/plants"],
        FOLDER,
        [*FOLDER, "--split", "test"],
    ],
)
def test_embed_predict_retrieve_cluster_take_every_kind_of_input(work, inputs, monkeypatch, capsys):
    monkeypatch.chdir(work)
    assert main(["embed", "run", *inputs, "--out", "e.npz"]) == 0
    assert main(["embed", "run", *inputs, "--out", "e.npy"]) == 0
    with np.load(work / "e.npz", allow_pickle=False) as saved:
        np.testing.assert_allclose(np.load(work / "e.npy"), saved["embeddings"])
        files = list(saved["files"])
    assert main(["predict", "run", *inputs, "--out", "p.csv"]) == 0
    rows = list(csv.DictReader((work / "p.csv").open()))
    assert [r["input"] for r in rows] == files
    assert main(["retrieve", "run", *inputs, "--k", "3", "--limit", "2", "--out", "g.png"]) == 0
    assert (work / "g.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["cluster", "run", *inputs, "--k", "2", "--out", "clusters"]) == 0
    printed = capsys.readouterr().out
    assert "inputs in 2 clusters" in printed
    if inputs[0] == "--dataset":  # labelled: scored against classes and parents
        assert "against parent (2 groups): nmi" in printed
        assert all(r["true_class"] in CLASSES for r in rows)


@pytest.mark.slow
def test_files_and_the_folder_give_the_same_predictions(work, monkeypatch):
    monkeypatch.chdir(work)
    assert main(["predict", "run", "--images", "../photos", "--out", "a.csv"]) == 0
    assert main(["predict", "run", *FOLDER, "--out", "b.csv"]) == 0
    by_file = {r["input"]: r["class"] for r in csv.DictReader((work / "a.csv").open())}
    by_dataset = {r["input"]: r["class"] for r in csv.DictReader((work / "b.csv").open())}
    assert by_file == by_dataset and len(by_file) == 32


@pytest.mark.slow
def test_evaluate_the_run_and_a_folder(work, monkeypatch, capsys):
    monkeypatch.chdir(work)
    assert main(["evaluate", "run", "--no-write"]) == 0
    own = capsys.readouterr().out
    assert "test/parent" in own and "concentration_at_1" in own
    assert main(["evaluate", "run", *FOLDER]) == 0
    assert "knc_error" in capsys.readouterr().out


def _numpy_knc(embeddings, index):
    """kNC from the exported arrays alone (paper §3.3), one query at a time."""
    out = []
    for r in embeddings.astype(np.float64):
        d2 = ((r[None] - index["centroids"]) ** 2).sum(-1)  # (C,)
        near = np.argsort(d2, kind="stable")[: int(index["neighbours"])]
        w = np.exp(-(d2[near] - d2[near[0]]) / (2 * float(index["lengthscale"])))
        scores = {}
        for label, weight in zip(index["centroid_labels"][near], w, strict=True):
            scores[int(label)] = scores.get(int(label), 0.0) + weight
        out.append(max(sorted(scores), key=scores.get))
    return out


@pytest.mark.slow
def test_export_takes_what_the_commands_take(work, monkeypatch):
    """numpy kNC over the exported files, fed the decoded image files, equals ``predict``."""
    from magnetdml.data.image_files import image_paths, read_images

    monkeypatch.chdir(work)
    assert main(["export", "run", "--out", "served"]) == 0
    assert main(["predict", "run", "--images", "../photos", "--out", "p.csv"]) == 0
    predicted = [r["class"] for r in csv.DictReader((work / "p.csv").open())]
    model = torch.export.load(str(work / "served" / "model.pt2")).module()
    with np.load(work / "served" / "index.npz", allow_pickle=False) as saved:
        index = {k: saved[k] for k in saved.files}
    assert float(index["input_range"]) == 255 and not bool(index["inverted"])
    pixels = read_images(image_paths(["../photos"]), index["input_shape"])  # 0..255
    with torch.no_grad():
        embeddings = model(torch.as_tensor(pixels, dtype=torch.float32)).numpy()
    names = list(index["class_names"])
    assert [names[c] for c in _numpy_knc(embeddings, index)] == predicted


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "run"], "pass the inputs: --images PATH..., --split S"),
        (["predict", "run", "--images", "../photos", "--split", "test"], "--images cannot be "),
        (
            ["embed", "run", "--data-dir", "../photos", "--split", "test", "--out", "e.npz"],
            "--data-dir needs --dataset",
        ),
        (["evaluate", "run", "--data-dir", "../photos"], "needs --dataset NAME"),
        (["embed", "run", "--split", "test", "--out", "e.txt"], "must end in .npz"),
        (
            [
                "cluster",
                "run",
                *FOLDER,
                "--data-options",
                "{class_level: 5}",
                "--k",
                "2",
                "--out",
                "c",
            ],
            "class_level=5 needs at least 5",
        ),
    ],
)
def test_bad_inputs_are_one_line(work, argv, message, monkeypatch, capsys):
    monkeypatch.chdir(work)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
