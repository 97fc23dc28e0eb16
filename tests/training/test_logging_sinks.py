"""``--train.log``: metrics.csv read back with the csv module, TensorBoard event files read back
with tensorboard's own reader, both agreeing with ``metrics.jsonl``."""

from __future__ import annotations

import csv
import json

import pytest

from magnetdml.cli import main
from magnetdml.training import apply_overrides, train
from magnetdml.training.config import Config
from magnetdml.training.logging_sinks import flatten

SHORT = {
    "train.threads": 1,
    "train.epochs": 2,
    "train.iterations_per_epoch": 3,
    "model.embedding_dim": 8,
    "index.clusters_per_class": 2,
    "eval.plots": False,
    "data.val_fraction": 0.2,
    "train.patience": 5,
}


def _history(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _csv(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_flatten_joins_nested_keys_and_keeps_numbers_only():
    record = {
        "loss": 1.5,
        "epoch": 2,
        "sigma2": None,
        "ok": True,
        "name": "x",
        "sampler": {"seeds": 3, "inner": {"a": 0.5}},
    }
    assert flatten(record) == {"loss": 1.5, "epoch": 2, "sampler.seeds": 3, "sampler.inner.a": 0.5}


def test_csv_is_the_default_one_row_per_epoch_matching_metrics_jsonl(tmp_path):
    assert Config().train.log == "csv"
    result = train(
        apply_overrides(Config(), {**SHORT, "out": str(tmp_path / "run")}), progress=False
    )
    rows, history = _csv(result.run_dir), _history(result.run_dir)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for row, record in zip(rows, history, strict=True):
        for key in (
            "loss",
            "lr",
            "sigma2",
            "knc_error",
            "knn_error",
            "val_knc_error",
            "clusters_per_class.mean",
        ):
            expected = flatten(record)[key]
            assert float(row[key]) == pytest.approx(expected, rel=1e-12), key
        assert float(row["refresh_seconds"]) >= 0
    assert not (result.run_dir / "tensorboard").exists()


def test_csv_of_a_resumed_run_drops_the_rows_after_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    plain = {**SHORT, "train.patience": 0}  # a patience run is not trained on
    train(apply_overrides(Config(), {**plain, "out": str(out)}), progress=False)
    rows = _csv(out)
    # as if killed after logging a third epoch that never reached its checkpoint
    with open(out / "metrics.csv", "a", newline="") as handle:
        csv.DictWriter(handle, fieldnames=list(rows[0])).writerow({**rows[-1], "epoch": "3"})
    train(apply_overrides(Config(), {**plain, "out": str(out), "train.epochs": 4}), progress=False)
    assert [int(r["epoch"]) for r in _csv(out)] == [1, 2, 3, 4]
    assert [r["loss"] for r in _csv(out)[:2]] == [r["loss"] for r in rows]


def test_log_none_writes_neither(tmp_path):
    result = train(
        apply_overrides(Config(), {**SHORT, "out": str(tmp_path / "run"), "train.log": "none"}),
        progress=False,
    )
    assert not (result.run_dir / "metrics.csv").exists()
    assert not (result.run_dir / "tensorboard").exists()


def test_an_unknown_log_is_one_line_naming_the_choices(tmp_path, capsys):
    assert main(["train", "--train.log", "wandb", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "train.log must be one of" in err and "tensorboard" in err and "'wandb'" in err


def test_tensorboard_events_hold_the_scalars_and_the_projector(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(
        apply_overrides(
            Config(), {**SHORT, "out": str(tmp_path / "run"), "train.log": "tensorboard"}
        ),
        progress=False,
    )
    logdir = result.run_dir / "tensorboard"
    events = EventAccumulator(str(logdir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "train/loss",
        "train/lr",
        "train/sigma2",
        "train/batch_loss",
        "index/refresh_seconds",
        "test/knc_error",
        "test/knn_error",
        "val/knc_error",
        "val/knn_error",
        "final/knc_error",
    } <= tags
    history = _history(result.run_dir)
    for tag, key in (
        ("train/loss", "loss"),
        ("train/lr", "lr"),
        ("train/sigma2", "sigma2"),
        ("test/knc_error", "knc_error"),
        ("val/knc_error", "val_knc_error"),
    ):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [r["iteration"] for r in history]
        assert [s.value for s in scalars] == pytest.approx([r[key] for r in history], rel=1e-6), tag
    assert len(events.Scalars("train/batch_loss")) == history[-1]["iteration"]
    assert events.Scalars("final/knc_error")[0].value == pytest.approx(
        result.summary["knc_error"], rel=1e-6
    )
    # the embedding projector: its config and the tensor of test embeddings with labels
    assert "test_embeddings" in (logdir / "projector_config.pbtxt").read_text()
    tensors = list(logdir.glob("*/test_embeddings/tensors.tsv"))
    assert len(tensors) == 1
    rows = tensors[0].read_text().splitlines()
    labels = (tensors[0].parent / "metadata.tsv").read_text().splitlines()
    assert len(rows) == len(labels) and 100 < len(rows) <= 2000  # digits: every test row
    assert len(rows[0].split("\t")) == SHORT["model.embedding_dim"]


def test_tensorboard_without_the_package_says_how_to_get_it(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    config = apply_overrides(
        Config(), {**SHORT, "out": str(tmp_path / "run"), "train.log": "tensorboard"}
    )
    with pytest.raises(ImportError, match=r"pip install 'magnetdml\[tensorboard\]'"):
        train(config, progress=False)


def test_tensorboard_of_a_run_trained_on_continues_its_steps(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    plain = {**SHORT, "train.patience": 0, "train.log": "tensorboard", "out": str(tmp_path / "run")}
    train(apply_overrides(Config(), plain), progress=False)
    result = train(apply_overrides(Config(), {**plain, "train.epochs": 3}), progress=False)
    events = EventAccumulator(str(result.run_dir / "tensorboard"))
    events.Reload()
    history = _history(result.run_dir)
    assert [s.step for s in events.Scalars("train/loss")] == [r["iteration"] for r in history]
    assert [s.step for s in events.Scalars("train/batch_loss")] == list(range(1, 10))
    refresh = events.Scalars("index/refresh_seconds")  # each epoch's, resumed or not
    assert [s.step for s in refresh] == [3, 6, 9] and all(s.value >= 0 for s in refresh)


def test_a_column_that_appears_later_widens_the_header(tmp_path):
    """Test errors every second epoch only (eval.every 2): epoch 1 has none, the file is
    rewritten with the wider header at epoch 2, and epoch 3 is appended under it."""
    result = train(
        apply_overrides(
            Config(),
            {
                **SHORT,
                "train.patience": 0,
                "train.epochs": 3,
                "eval.every": 2,
                "out": str(tmp_path / "run"),
            },
        ),
        progress=False,
    )
    rows = _csv(result.run_dir)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [r["knc_error"] for r in rows][0] == ""
    assert all(rows[i]["knc_error"] for i in (1, 2))  # epoch 3: the last is evaluated
    assert float(rows[1]["knc_error"]) == _history(result.run_dir)[1]["knc_error"]
