"""Re-evaluating saved run folders (``magnetdml evaluate``) against what training recorded."""

import json

import numpy as np
import pytest
import torch

from magnetdml.cli import main
from magnetdml.evaluation import UNSEEN_METRICS
from magnetdml.training import Config, apply_overrides, train
from magnetdml.training.runs import EVALUATION, evaluate_run, load_run

FAST = {
    "train.epochs": 2,
    "train.iterations_per_epoch": 4,
    "train.threads": 1,
    "eval.plots": False,
    "sampler.classes_per_batch": 8,
    "sampler.examples_per_class": 6,
}


def _train(path, **overrides):
    config = apply_overrides(Config(), {**FAST, "out": str(path), **overrides})
    return train(config, progress=False)


@pytest.fixture(scope="module")
def magnet_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("runs") / "magnet")


@pytest.fixture(scope="module")
def softmax_unseen_run(tmp_path_factory):
    """A loss without a cluster index, on data with a validation and an unseen split."""
    return _train(
        tmp_path_factory.mktemp("runs") / "softmax",
        **{
            "loss.name": "softmax",
            "data.unseen_classes": 0.3,
            "data.val_fraction": 0.2,
            "sampler.classes_per_batch": 6,
            "sampler.examples_per_class": 8,
        },
    )


def test_evaluate_reproduces_every_test_metric_of_metrics_json(magnet_run):
    results = evaluate_run(magnet_run.run_dir, split="test")
    summary = magnet_run.summary
    assert set(results) == {"test"}
    test = results["test"]
    shared = [key for key in test if key in summary]
    assert {"knc_error", "knn_error", "error_at_5", "map_at_r", "nmi", "f1"} <= set(shared)
    for key in shared:
        assert test[key] == pytest.approx(summary[key], abs=1e-12), key
    assert test["knc_error_at_1"] == test["knc_error"]
    written = json.loads((magnet_run.run_dir / EVALUATION).read_text())
    assert written["test"] == pytest.approx(test)
    assert (written["epoch"], written["iteration"], written["finished"]) == (2, 8, True)


def test_knc_error_matches_a_brute_force_nearest_cluster_vote(magnet_run):
    run = load_run(magnet_run.run_dir)
    queries = run.embed(run.splits.test).astype(np.float64)  # (N, E)
    centres = run.index.centroids_.astype(np.float64)  # (C, E)
    wrong = 0
    for query, label in zip(queries, run.splits.test.labels, strict=True):
        d2 = ((centres - query) ** 2).sum(axis=1)
        nearest = np.argsort(d2)[: run.config.eval.neighbours]
        votes = {}
        for j in nearest:
            c = int(run.index.centroid_labels_[j])
            votes[c] = votes.get(c, 0.0) + np.exp(-(d2[j] - d2[nearest[0]]) / (2 * run.sigma2))
        wrong += max(votes, key=lambda c: (votes[c], -c)) != label
    result = evaluate_run(run, split="test", metrics=["knc_error"], write=False)
    assert result["test"]["knc_error"] == pytest.approx(wrong / len(queries))


def test_load_run_restores_the_checkpoint(magnet_run):
    run = load_run(magnet_run.run_dir)
    state = torch.load(magnet_run.run_dir / "checkpoint.pt", weights_only=False)
    for name, value in run.model.state_dict().items():
        assert torch.equal(value, state["model"][name]), name
    np.testing.assert_array_equal(run.index.centroids_, state["index"]["centroids_"])
    assert run.sigma2 == magnet_run.summary["sigma2"]
    assert run.finished and run.epoch == 2 and not run.model.training
    assert [r["epoch"] for r in run.history] == [1, 2]


def test_metrics_filter_keeps_only_the_named_metrics(magnet_run):
    results = evaluate_run(
        magnet_run.run_dir, split="test", metrics=["map_at_r", "knc_error"], write=False
    )
    assert list(results["test"]) == ["map_at_r", "knc_error"]


def test_val_and_unseen_splits_and_losses_without_an_index(softmax_unseen_run):
    results = evaluate_run(softmax_unseen_run.run_dir)  # split="all"
    summary = softmax_unseen_run.summary
    assert list(results) == ["test", "val", "unseen"]
    assert results["val"].keys() == results["test"].keys()
    assert results["test"]["knc_error"] == pytest.approx(summary["knc_error"], abs=1e-12)
    assert results["test"]["knn_error"] == pytest.approx(summary["knn_error"], abs=1e-12)
    # one list of unseen metrics: training's summary reports every one evaluate_run does
    assert list(results["unseen"]) == list(summary["unseen"]) == list(UNSEEN_METRICS)
    for key in UNSEEN_METRICS:
        assert results["unseen"][key] == pytest.approx(summary["unseen"][key], abs=1e-12), key
    assert not any(key.startswith("knc") for key in results["unseen"])


def test_a_run_whose_index_clusters_older_embeddings_is_scored_as_training_did(tmp_path):
    # Between refreshes (here: none after the first) the run's index is stale; training scored
    # kNC with a refreshed copy (fit_knc, current=False), and so must a reloaded run.
    result = _train(tmp_path / "stale", **{"index.refresh_every": 100})
    run = load_run(result.run_dir)
    assert run.index_iteration == 0 < run.iteration
    scores = evaluate_run(run, split="test", metrics=["knc_error", "knn_error"], write=False)
    assert scores["test"] == {
        "knc_error": result.summary["knc_error"],
        "knn_error": result.summary["knn_error"],
    }
    labels = run.splits.test.labels
    assert np.mean(run.predict(run.splits.test) != labels) == result.summary["knc_error"]


def test_errors_name_the_problem(tmp_path, magnet_run):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run(tmp_path / "missing")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="has no checkpoint.pt yet: its training stopped"):
        load_run(tmp_path)
    with pytest.raises(ValueError, match="split 'unseen' is empty.*unseen_classes"):
        evaluate_run(magnet_run.run_dir, split="unseen", write=False)
    with pytest.raises(ValueError, match="split must be one of"):
        evaluate_run(magnet_run.run_dir, split="train", write=False)
    with pytest.raises(ValueError, match=r"unknown \['knc'\]"):
        evaluate_run(magnet_run.run_dir, metrics=["knc"], write=False)


def test_cli_prints_a_table_beside_the_recorded_values(magnet_run, capsys):
    assert (
        main(
            [
                "evaluate",
                str(magnet_run.run_dir),
                "--split",
                "test",
                "--metrics",
                "knc_error,knn_error",
                "--no-write",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    expected = f"{100 * magnet_run.summary['knc_error']:.2f}%"
    line = next(line for line in out.splitlines() if line.startswith("knc_error"))
    assert line.split()[1:] == [expected, expected]
    assert "knn_error" in out and "map_at_r" not in out


def test_cli_error_for_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err
