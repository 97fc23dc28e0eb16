"""A trained run put to work (``md.load_run``): embed, predict, top-k, neighbours, clusters."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import magnetdml as md
from magnetdml.training import apply_overrides
from magnetdml.training.config import Config

SHORT = {
    "train.threads": 1,
    "train.epochs": 2,
    "train.iterations_per_epoch": 6,
    "model.embedding_dim": 16,
    "index.clusters_per_class": 2,
    "eval.plots": False,
    "sampler.classes_per_batch": 5,
}


@pytest.fixture(scope="module", params=["magnet", "softmax"])
def run(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param) / "run"
    config = apply_overrides(Config(), {**SHORT, "loss.name": request.param, "out": str(out)})
    md.train(config, progress=False)
    return md.load_run(out)


@pytest.mark.slow
def test_predict_is_the_knc_classifier_that_scored_the_run(run):
    summary = json.loads((run.path / "metrics.json").read_text())
    test = run.splits.test
    predicted = run.predict(test)
    assert predicted.shape == (len(test),)
    assert np.mean(predicted != test.labels) == pytest.approx(summary["knc_error"])
    scores = run.predict_proba(test)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-6)
    assert np.array_equal(run.classifier().classes_[scores.argmax(axis=1)], predicted)
    classes, probabilities = run.top_k(test, k=3)
    assert classes.shape == probabilities.shape == (len(test), 3)
    assert np.array_equal(classes[:, 0], predicted)
    assert (np.diff(probabilities, axis=1) <= 0).all()
    assert len(run.class_names) == run.splits.num_classes


@pytest.mark.slow
def test_kneighbors_are_the_nearest_training_examples(run):
    test = run.splits.test
    distances, indices = run.kneighbors(test, k=5)
    reference, queries = run.reference_embeddings(), run.embed(test)
    brute = np.linalg.norm(queries[:, None] - reference[None], axis=2)  # (N, M)
    np.testing.assert_allclose(distances, np.sort(brute, axis=1)[:, :5], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        np.take_along_axis(brute, indices, axis=1), distances, rtol=1e-4, atol=1e-4
    )


@pytest.mark.slow
def test_cluster_groups_every_input(run):
    assignments = run.cluster(run.splits.test, n_clusters=10)
    assert assignments.shape == (len(run.splits.test),)
    assert set(np.unique(assignments)) <= set(range(10))


@pytest.mark.slow
def test_every_kind_of_input_gives_the_same_embeddings(run):
    test = run.splits.test
    expected = run.embed(test)
    inputs, _ = test.get_batch(np.arange(len(test)))  # preprocessed tensors
    np.testing.assert_allclose(run.embed(inputs), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run.embed(inputs.numpy()), expected, rtol=1e-5, atol=1e-6)
    dataset = TensorDataset(inputs, torch.as_tensor(test.labels))
    np.testing.assert_allclose(md.embed(run.model, dataset), expected, rtol=1e-5, atol=1e-6)
    # raw images as the loader stores them, preprocessed like the training inputs
    raw = test._data[test._rows] if test._rows is not None else test._data
    np.testing.assert_allclose(run.embed(run.preprocess(raw)), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"images must be \(N, 1, 8, 8\) like the run's"):
        run.preprocess(np.zeros((2, 5, 5), dtype=np.uint8))
    with pytest.raises(TypeError, match="cannot embed a int"):
        run.embed(5)


def _write_pngs(run, folder, count=None):
    """The test split (its first ``count`` images) as PNG files (grey levels 0..255), in
    order."""
    from PIL import Image

    test = run.splits.test
    raw = test._data[test._rows] if test._rows is not None else test._data  # 0..16
    folder.mkdir(exist_ok=True)
    for i, image in enumerate(raw[:count, 0]):
        level = np.rint(image.astype(np.float64) * 255 / test.pixel_max).astype(np.uint8)
        Image.fromarray(level).save(folder / f"{i:04d}.png")
    return folder


@pytest.mark.slow
def test_predict_command_on_image_files_and_on_a_split(run, tmp_path, capsys):
    from magnetdml.cli import main

    folder = _write_pngs(run, tmp_path / "images")
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(run.path), "--images", str(folder), "--out", str(out)]) == 0
    import csv

    rows = list(csv.DictReader(out.open()))
    names = run.class_names
    assert [r["class"] for r in rows] == [names[c] for c in run.predict(run.splits.test)]
    assert len(rows[0]["top"].split("; ")) == 5
    capsys.readouterr()
    assert main(["predict", str(run.path), "--split", "test", "--top", "2"]) == 0
    summary = json.loads((run.path / "metrics.json").read_text())
    assert (
        f"kNC error on these {len(rows)} inputs: {100 * summary['knc_error']:.2f}%"
        in capsys.readouterr().out
    )
    as_json = tmp_path / "p.json"
    assert main(["predict", str(run.path), "--split", "test", "--out", str(as_json)]) == 0
    assert json.loads(as_json.read_text())[0]["class"] == rows[0]["class"]


@pytest.mark.slow
def test_embed_command_writes_embeddings_labels_and_names(run, tmp_path):
    from magnetdml.cli import main

    out = tmp_path / "e.npz"
    assert main(["embed", str(run.path), "--split", "test", "--out", str(out)]) == 0
    with np.load(out, allow_pickle=False) as saved:
        np.testing.assert_allclose(saved["embeddings"], run.embed(run.splits.test), rtol=1e-6)
        assert np.array_equal(saved["labels"], run.splits.test.labels)
        assert list(saved["class_names"]) == run.class_names
    folder = _write_pngs(run, tmp_path / "images")
    assert (
        main(["embed", str(run.path), "--images", str(folder / "0000.png"), "--out", str(out)]) == 0
    )
    with np.load(out, allow_pickle=False) as saved:
        assert saved["labels"].tolist() == [-1] and saved["files"][0].endswith("0000.png")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "RUN", "--split", "test", "--out", "x.txt"], "must end in .csv or .json"),
        (["predict", "RUN", "--split", "test", "--top", "0"], "--top must be >= 1"),
        (["embed", "RUN", "--split", "test", "--out", "x.txt"], "must end in .npz"),
        (["predict", "RUN", "--images", "nowhere.png"], "image 'nowhere.png' does not exist"),
        (["predict", "RUN", "--split", "val"], "has no val split"),
    ],
)
def test_bad_input_to_the_commands_is_one_line(run, argv, message, capsys, tmp_path, monkeypatch):
    from magnetdml.cli import main

    monkeypatch.chdir(tmp_path)
    argv = [str(run.path) if a == "RUN" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def _numpy_knc(embeddings, index):
    """kNC from the exported arrays alone, as the export module's docstring writes it."""
    d2 = ((embeddings[:, None].astype(np.float64) - index["centroids"][None]) ** 2).sum(-1)
    near = np.argsort(d2, axis=1, kind="stable")[:, : int(index["neighbours"])]
    rows = np.arange(len(d2))[:, None]
    w = np.exp(-(d2[rows, near] - d2[rows, near[:, :1]]) / (2 * float(index["lengthscale"])))
    classes = np.unique(index["centroid_labels"])
    scores = np.zeros((len(d2), len(classes)))
    np.add.at(
        scores,
        (
            np.repeat(np.arange(len(d2)), near.shape[1]),
            np.searchsorted(classes, index["centroid_labels"][near]).ravel(),
        ),
        w.ravel(),
    )
    return classes[scores.argmax(axis=1)]


@pytest.mark.slow
def test_export_round_trip_reproduces_predict(run, tmp_path):
    """The exported model takes what the commands take (image pixels 0..255, not digits'
    native 0..16): the test split written as PNGs and read back gives run.predict's classes."""
    from magnetdml.cli import main
    from magnetdml.data.image_files import image_paths, read_images

    assert main(["export", str(run.path), "--out", str(tmp_path / "served")]) == 0
    model = torch.export.load(str(tmp_path / "served" / "model.pt2")).module()
    with np.load(tmp_path / "served" / "index.npz", allow_pickle=False) as saved:
        index = {k: saved[k] for k in saved.files}
    test = run.splits.test
    pixels = read_images(
        image_paths([_write_pngs(run, tmp_path / "images")]), index["input_shape"]
    )  # 0..255
    with torch.no_grad():
        embeddings = model(torch.as_tensor(pixels, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(embeddings, run.embed(test), rtol=1e-4, atol=1e-5)
    assert np.array_equal(_numpy_knc(embeddings, index), run.predict(test))
    assert list(index["class_names"]) == run.class_names


@pytest.mark.slow
def test_embed_command_reads_a_dataset_by_name(run, tmp_path):
    from magnetdml.cli import main

    out = tmp_path / "e.npy"
    assert main(["embed", str(run.path), "--dataset", "digits", "--out", str(out)]) == 0
    splits = run.splits
    everything = np.concatenate([run.embed(p) for p in (splits.train, splits.test)])
    np.testing.assert_allclose(np.load(out), everything, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_retrieve_command_lists_neighbours_and_draws_them(run, tmp_path, capsys):
    from magnetdml.cli import main

    out = tmp_path / "grid.png"
    assert (
        main(
            [
                "retrieve",
                str(run.path),
                "--split",
                "test",
                "--k",
                "3",
                "--limit",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out.splitlines()
    _, indices = run.kneighbors(run.splits.test, k=3)
    first = run.class_names[run.splits.train.labels[indices[0, 0]]]
    assert printed[0].startswith(f"test[0]: {first} (")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_cluster_command_writes_assignments_and_sheets(run, tmp_path, capsys):
    from magnetdml.cli import main

    out = tmp_path / "clusters"
    assert main(["cluster", str(run.path), "--split", "test", "--k", "10", "--out", str(out)]) == 0
    import csv

    rows = list(csv.DictReader((out / "assignments.csv").open()))
    assert len(rows) == len(run.splits.test)
    assert {int(r["cluster"]) for r in rows} <= set(range(10))
    assert len(list(out.glob("cluster_*.png"))) == len({r["cluster"] for r in rows})
    printed = capsys.readouterr().out
    assert "against the labels: nmi" in printed
    folder = _write_pngs(run, tmp_path / "images", count=40)
    assert (
        main(
            [
                "cluster",
                str(run.path),
                "--images",
                str(folder),
                "--auto",
                "--out",
                str(tmp_path / "auto"),
            ]
        )
        == 0
    )
    assert "inputs in" in capsys.readouterr().out


@pytest.mark.slow
def test_evaluate_on_another_copy_and_on_other_classes(run, tmp_path, capsys):
    from magnetdml.cli import main
    from magnetdml.training.runs import evaluate_on, evaluate_run

    same = evaluate_on(run, "digits")  # the run's classes: seen
    assert same["test"]["knc_error"] == pytest.approx(
        evaluate_run(run, split="test", write=False)["test"]["knc_error"]
    )
    # other classes (a tiny Omniglot at the digits' 8 x 8): clustering and retrieval only
    rng = np.random.default_rng(0)
    images = np.where(rng.random((6 * 20, 30, 30)) < 0.2, 0, 255).astype(np.uint8)
    np.savez_compressed(
        tmp_path / "omniglot_background.npz",
        images=images,
        labels=np.repeat(np.arange(6), 20).astype(np.int16),
        alphabet=np.repeat(["A", "B", "C"], 2),
        character=np.array(["character01", "character02"] * 3),
    )
    other = evaluate_on(run, "omniglot", str(tmp_path), options="{size: 8, use_cache: false}")
    assert set(other) == {"unseen"} and 0 <= other["unseen"]["nmi"] <= 1
    with pytest.raises(ValueError, match=r"has inputs \(1, 28, 28\) but the run was trained "):
        evaluate_on(run, "omniglot", str(tmp_path), options="{use_cache: false}")
    assert (
        main(
            [
                "evaluate",
                str(run.path),
                "--dataset",
                "omniglot",
                "--data-dir",
                str(tmp_path),
                "--data-options",
                "{size: 8, use_cache: false}",
            ]
        )
        == 0
    )
    assert "nmi" in capsys.readouterr().out
