"""Training to convergence (``train.patience``) and pretrained starts (``model.init_from``)."""

from __future__ import annotations

import json

import pytest
import torch

from magnetdml.training import apply_overrides, train
from magnetdml.training.config import Config
from magnetdml.training.distributed import Distributed
from magnetdml.training.trainer import Trainer

SHORT = {
    "train.threads": 1,
    "train.epochs": 2,
    "train.iterations_per_epoch": 4,
    "model.embedding_dim": 16,
    "index.clusters_per_class": 2,
    "eval.plots": False,
    "sampler.classes_per_batch": 5,
    "eval.every": 0,
    "data.val_fraction": 0.2,
}


def _config(out, **overrides) -> Config:
    return apply_overrides(Config(), {**SHORT, "out": str(out), **overrides})


def _weights(run_dir) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)["model"]


def _history(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


SCORES = ("knc_error", "knn_error", "recall_at_1", "sigma2", "clusters")


def _interrupted_in_second_epoch(monkeypatch, config: Config) -> None:
    """Train ``config`` until a Ctrl-C in the first step of its second epoch."""
    original = Trainer.step

    def crash_in_second_epoch(self, batch):
        if self.iteration == SHORT["train.iterations_per_epoch"] + 1:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(Trainer, "step", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False)
    monkeypatch.undo()


def _scripted_validation(monkeypatch, errors: list[float]) -> None:
    """Validation errors ``errors[epoch - 1]``; the test split is scored for real."""
    original = Trainer.evaluate

    def evaluate(self, dataset=None, **kwargs):
        if dataset is self.splits.val:
            error = errors[self.epoch - 1]
            return {"knc_error": error, "knn_error": error}
        return original(self, dataset, **kwargs)

    monkeypatch.setattr(Trainer, "evaluate", evaluate)


@pytest.mark.parametrize("loss", ["magnet", "triplet"])
def test_patience_stops_and_scores_the_best_epochs_model(tmp_path, monkeypatch, loss):
    """Errors 0.5, 0.3, 0.4, 0.35 with patience 2: epoch 2 is best and 4 - 2 >= 2, so the run
    stops after epoch 4 (of 6) and its final scores are those of the model after epoch 2 --
    the same as a run of 2 epochs."""
    _scripted_validation(monkeypatch, [0.5, 0.3, 0.4, 0.35, 0.1, 0.1])
    stopped = train(
        _config(
            tmp_path / "stopped", **{"train.epochs": 6, "train.patience": 2, "loss.name": loss}
        ),
        progress=False,
    )
    monkeypatch.undo()
    two = train(_config(tmp_path / "two", **{"loss.name": loss}), progress=False)
    history = _history(tmp_path / "stopped")
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert [r["val_knn_error"] for r in history] == [0.5, 0.3, 0.4, 0.35]
    assert stopped.summary["early_stopping"] == {
        "patience": 2,
        "metric": "val_knc_error" if loss == "magnet" else "val_knn_error",
        "best_epoch": 2,
        "best_val_error": 0.3,
        "last_epoch": 4,
        "stopped_early": True,
    }
    assert stopped.summary["epochs"] == 4
    for key in SCORES:
        assert stopped.summary.get(key) == two.summary.get(key), key


def test_a_run_that_keeps_improving_trains_every_epoch(tmp_path, monkeypatch):
    _scripted_validation(monkeypatch, [0.5, 0.4, 0.3])
    result = train(
        _config(tmp_path / "run", **{"train.epochs": 3, "train.patience": 1}), progress=False
    )
    assert result.summary["early_stopping"]["best_epoch"] == 3
    assert result.summary["early_stopping"]["stopped_early"] is False


def test_validation_is_scored_for_real_every_epoch_and_resumes(tmp_path, monkeypatch):
    overrides = {"train.epochs": 3, "train.patience": 1}
    straight = train(_config(tmp_path / "straight", **overrides), progress=False)
    history = _history(tmp_path / "straight")
    assert all(0 <= r["val_knc_error"] <= 1 and 0 <= r["val_knn_error"] <= 1 for r in history)

    _interrupted_in_second_epoch(monkeypatch, _config(tmp_path / "resumed", **overrides))
    resumed = train(_config(tmp_path / "resumed", **overrides), progress=False)
    for key in (*SCORES, "early_stopping", "epochs"):
        assert resumed.summary.get(key) == straight.summary.get(key), key
    assert _history(tmp_path / "resumed") == [
        {**r, "train_seconds": r2["train_seconds"]}
        for r, r2 in zip(history, _history(tmp_path / "resumed"), strict=True)
    ]


def test_patience_without_a_validation_split_is_one_clear_error(tmp_path):
    config = _config(tmp_path / "run", **{"train.patience": 3, "data.val_fraction": 0.0})
    with pytest.raises(
        ValueError,
        match=r"train.patience 3 .* no validation split; set "
        r"data.val_fraction",
    ):
        train(config, progress=False)


def test_init_from_starts_from_the_runs_weights_and_leaves_the_rng_alone(tmp_path):
    pretrained = train(_config(tmp_path / "pre", **{"loss.name": "softmax"}), progress=False)
    weights = _weights(pretrained.run_dir)

    def trainer(**overrides) -> Trainer:
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        config = _config(out, **{"loss.name": "softmax", **overrides}).validate()
        return Trainer(config, Distributed.setup("cpu"))

    started = trainer(**{"model.init_from": str(pretrained.run_dir)})
    for name, value in started.model.state_dict().items():
        torch.testing.assert_close(value, weights[name], rtol=0, atol=0)
    plain = trainer()
    assert any(not torch.equal(v, weights[k]) for k, v in plain.model.state_dict().items())
    # the classifier is the loss's own (drawn after the model), as without init_from
    for name, value in plain.loss_fn.state_dict().items():
        torch.testing.assert_close(started.loss_fn.state_dict()[name], value, rtol=0, atol=0)
    from_file = trainer(**{"model.init_from": str(pretrained.run_dir / "checkpoint.pt")})
    for name, value in from_file.model.state_dict().items():
        torch.testing.assert_close(value, weights[name], rtol=0, atol=0)


def test_init_from_that_does_not_fit_is_one_clear_error(tmp_path):
    pretrained = train(_config(tmp_path / "pre"), progress=False)
    with pytest.raises(
        ValueError,
        match=r"does not fit this model \(head.weight is \(16, "
        r".* there, \(8, .* here.*same model.backbone",
    ):
        train(
            _config(
                tmp_path / "b",
                **{"model.init_from": str(pretrained.run_dir), "model.embedding_dim": 8},
            ),
            progress=False,
        )
    with pytest.raises(FileNotFoundError, match="is not a run folder with a checkpoint.pt"):
        train(
            _config(tmp_path / "c", **{"model.init_from": str(tmp_path / "nowhere")}),
            progress=False,
        )
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="model.init_from: .* cannot be read as a checkpoint"):
        train(_config(tmp_path / "d", **{"model.init_from": str(broken)}), progress=False)
    # none of the refused runs left a folder that blocks the corrected command
    train(_config(tmp_path / "b", **{"model.init_from": str(pretrained.run_dir)}), progress=False)


def test_the_saved_checkpoint_is_the_best_epochs_model(tmp_path, monkeypatch):
    """``magnetdml evaluate`` loads the checkpoint: it must hold the model that was scored."""
    _scripted_validation(monkeypatch, [0.5, 0.3, 0.4, 0.35])
    train(_config(tmp_path / "stopped", **{"train.epochs": 4, "train.patience": 2}), progress=False)
    monkeypatch.undo()
    train(_config(tmp_path / "two"), progress=False)
    for name, value in _weights(tmp_path / "two").items():
        torch.testing.assert_close(_weights(tmp_path / "stopped")[name], value, rtol=0, atol=0)


def test_on_epoch_hook_sees_every_epoch_and_adds_to_its_record(tmp_path):
    seen = []

    def hook(trainer, record):
        seen.append(trainer.epoch)
        record["my_norm"] = float(trainer.embed(trainer.splits.test).std())

    train(_config(tmp_path / "run", **{"train.epochs": 3}), progress=False, on_epoch=hook)
    assert seen == [1, 2, 3]
    assert all(r["my_norm"] > 0 for r in _history(tmp_path / "run"))


def test_a_moved_run_folder_resumes(tmp_path, monkeypatch):
    """Resume identity is what the run computes, not where its folder is."""
    import shutil

    _interrupted_in_second_epoch(monkeypatch, _config(tmp_path / "here"))
    shutil.move(tmp_path / "here", tmp_path / "there")
    resumed = train(_config(tmp_path / "there", **{"train.threads": 2}), progress=False)
    assert resumed.summary["epochs"] == 2
    assert [r["epoch"] for r in _history(tmp_path / "there")] == [1, 2]


def test_the_summary_is_written_after_the_plots(tmp_path, monkeypatch):
    from magnetdml.training import loop

    seen = {}

    def plot(path, trainer):
        seen["finished_while_plotting"] = (path / "metrics.json").exists()

    monkeypatch.setattr(loop, "plot_run", plot)
    train(_config(tmp_path / "run", **{"eval.plots": True}), progress=False)
    assert seen == {"finished_while_plotting": False}
    assert (tmp_path / "run" / "metrics.json").exists()


def test_a_finished_run_trains_on_with_more_epochs(tmp_path):
    """The same run, longer: 2 epochs then 2 more equal 4 in one go."""
    two = train(_config(tmp_path / "run"), progress=False)
    assert two.summary["epochs"] == 2
    four = train(_config(tmp_path / "run", **{"train.epochs": 4}), progress=False)
    straight = train(_config(tmp_path / "straight", **{"train.epochs": 4}), progress=False)
    assert four.summary["epochs"] == 4
    for key in SCORES:
        assert four.summary.get(key) == straight.summary.get(key), key
    assert [r["epoch"] for r in _history(tmp_path / "run")] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="already holds a finished run.*larger --train.epochs"):
        train(_config(tmp_path / "run", **{"train.epochs": 3}), progress=False)
    with pytest.raises(ValueError, match="already holds a finished run"):
        train(_config(tmp_path / "run", **{"train.epochs": 6, "train.lr": 0.01}), progress=False)


@pytest.mark.parametrize("loss", ["triplet", "magnet"])
def test_validation_and_test_scores_of_a_pass_share_one_index_fit(tmp_path, monkeypatch, loss):
    # Without an index of its own (triplet), or between refreshes (Magnet refreshing every 2
    # epochs), kNC needs an index of the current embeddings; the validation and the test
    # scores of one pass must fit it once, and score exactly as with a fit for each.
    from magnetdml.clustering import ClusterIndex
    from magnetdml.training.eval_step import Evaluation

    fits = []
    for name in ("fit", "refresh"):
        monkeypatch.setattr(ClusterIndex, name, _counted(getattr(ClusterIndex, name), fits))
    overrides = {
        "train.epochs": 3,
        "train.patience": 3,
        "eval.every": 1,
        "loss.name": loss,
        "index.refresh_every": 8,
    }
    cached = train(_config(tmp_path / "cached", **overrides), progress=False)
    cached_fits = len(fits)

    knc = Evaluation.knc

    def uncached(self, *args, **kwargs):
        self._knc = None
        return knc(self, *args, **kwargs)

    monkeypatch.setattr(Evaluation, "knc", uncached)
    fits.clear()
    uncached = train(_config(tmp_path / "uncached", **overrides), progress=False)
    assert cached_fits < len(fits)
    history, other = _history(tmp_path / "cached"), _history(tmp_path / "uncached")
    assert history == [
        {**r, "train_seconds": h["train_seconds"]} for r, h in zip(other, history, strict=True)
    ]
    for key in SCORES:
        assert cached.summary.get(key) == uncached.summary.get(key), key


def _counted(method, calls):
    def counted(self, *args, **kwargs):
        calls.append(method.__name__)
        return method(self, *args, **kwargs)

    return counted
