"""The training loop end to end on digits (one process, one thread): run folder contents,
resume after an interruption, refusal of finished runs, every loss, and the CLI."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from magnetdml.cli import main
from magnetdml.evaluation import KNearestClusters
from magnetdml.losses import LOSSES
from magnetdml.training import apply_overrides, train
from magnetdml.training.checkpoint_state import weights_state
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
}  # digits has 10 classes


def _config(out, **overrides) -> Config:
    return apply_overrides(Config(), {**SHORT, "out": str(out), **overrides})


def _checkpoint(run_dir) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)


def _model(run_dir) -> dict:
    return _checkpoint(run_dir)["model"]


def _scores(summary: dict) -> dict:
    """Everything but wall-clock fields and the folder name."""
    drop = {
        "run_dir",
        "train_seconds",
        "refresh_seconds",
        "initial_index_seconds",
        "warm_start_seconds",
        "images_per_second",
    }
    return {k: v for k, v in summary.items() if k not in drop}


@pytest.mark.slow
def test_default_cli_job_writes_the_run_folder_and_reaches_three_percent(tmp_path, capsys):
    """The README's first command (CLI defaults: Magnet on digits, 30 epochs)."""
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--quiet", "--train.threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "kNC test error:" in printed and f"run folder: {out}" in printed
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "metrics.jsonl",
        "metrics.csv",
        "checkpoint.pt",
        "metrics.json",
        "loss_curve.png",
        "tsne_initial.png",
        "tsne_final.png",
    } <= names
    summary = json.loads((out / "metrics.json").read_text())
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == list(range(1, 31))
    assert history[-1]["refreshes"] == 31  # the initial fit + one after every epoch
    assert summary["knc_error"] < 0.03, summary["knc_error"]
    assert f"{100 * summary['knc_error']:.2f}%" in printed


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        # uniform batches and the classifier the warm start hands over resume bit for bit too
        {"loss.name": "softmax", "train.warm_start_epochs": 1},
        # bfloat16 refreshes: deterministic, and the resumed run refits the checkpoint's index
        # on float32 embeddings for its per-epoch evaluation as the straight run did
        {"index.refresh_precision": "bfloat16"},
    ],
)
def test_interrupted_run_resumes_to_the_same_model_and_metrics(tmp_path, monkeypatch, overrides):
    straight = train(_config(tmp_path / "straight", **overrides), progress=False)

    original = Trainer.step

    def crash_in_second_epoch(self, batch):
        if self.iteration == SHORT["train.iterations_per_epoch"] + 1:
            raise KeyboardInterrupt
        return original(self, batch)

    interrupted = _config(tmp_path / "resumed", **overrides)
    monkeypatch.setattr(Trainer, "step", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, progress=False)
    monkeypatch.setattr(Trainer, "step", original)
    saved = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert saved["epoch"] == 1 and not (tmp_path / "resumed" / "metrics.json").exists()

    resumed = train(interrupted, progress=False)
    assert _scores(resumed.summary) == _scores(straight.summary)
    for name, value in _model(tmp_path / "straight").items():
        torch.testing.assert_close(_model(tmp_path / "resumed")[name], value, rtol=0, atol=0)
    for name, value in _checkpoint(tmp_path / "straight")["loss"].items():
        torch.testing.assert_close(
            _checkpoint(tmp_path / "resumed")["loss"][name], value, rtol=0, atol=0
        )
    epochs = [
        json.loads(line)["epoch"]
        for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    ]
    assert epochs == [1, 2]


def test_finished_run_is_refused_without_overwrite(tmp_path):
    config = _config(tmp_path / "run", **{"train.epochs": 1})
    first = train(config, progress=False)
    with pytest.raises(ValueError, match="already holds a finished run.*--overwrite"):
        train(config, progress=False)
    again = train(config, overwrite=True, progress=False)
    assert _scores(again.summary) == _scores(first.summary)


def test_evaluation_between_refreshes_clusters_the_current_model(tmp_path):
    """With a refresh every N iterations the training index can be stale at evaluation: kNC
    must use clusters of the current embeddings (a copy), leaving the training index as is."""
    config = _config(tmp_path / "run", **{"index.refresh_every": 100}).validate()
    t = Trainer(config, Distributed.setup("cpu"))
    t.build_initial_index()
    stale = t.index.assignments_.copy()
    for _ in range(3):
        t.step(t.sampler.next_batch())
    metrics = t.evaluate()
    np.testing.assert_array_equal(t.index.assignments_, stale)
    assert t.upkeep.index_iteration == 0 and t.iteration == 3
    fresh = copy.deepcopy(t.index).refresh(t.train_embeddings(), t.labels)
    knc = KNearestClusters(neighbours=config.eval.neighbours).fit(fresh, t.sigma2)
    test = t.splits.test
    assert metrics["knc_error"] == float(np.mean(knc.predict(t.embed(test)) != test.labels))


def test_knc_uses_the_lengthscale_of_the_temperature(tmp_path):
    """A model trained with inverse temperature s is classified with exp(-s d^2 / (2 sigma^2)):
    kNC's lengthscale is sigma^2 / s, in training's evaluation and in a reloaded run."""
    from magnetdml.training.runs import evaluate_run, load_run

    summary = train(_config(tmp_path / "run", **{"loss.scale": 4.0})).summary
    run = load_run(tmp_path / "run")
    knc = run.classifier()
    index, lengthscale = knc.index_, knc.lengthscale_
    assert run.config.loss.scale == 4.0 and lengthscale == pytest.approx(run.sigma2 / 4.0)
    test = run.splits.test
    predicted = (
        KNearestClusters(neighbours=128).fit(index, run.sigma2 / 4.0).predict(run.embed(test))
    )
    assert summary["knc_error"] == float(np.mean(predicted != test.labels))
    assert evaluate_run(run, split="test", metrics=["knc_error"], write=False)["test"] == {
        "knc_error": summary["knc_error"]
    }


@pytest.mark.parametrize("loss", LOSSES.names())
def test_every_registered_loss_trains_an_epoch(tmp_path, loss):
    summary = train(
        _config(tmp_path / loss, **{"loss.name": loss, "train.epochs": 1}), progress=False
    ).summary
    assert summary["loss"] == loss and summary["iterations"] == 4
    assert 0.0 <= summary["knc_error"] <= 1.0 and 0.0 <= summary["knn_error"] <= 1.0
    assert summary["images_per_second"] > 0


def test_cli_bad_value_is_one_line_naming_the_field(tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path / "run"), "--train.epochs", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0
    assert err.startswith("magnetdml train: error: train.epochs must be >= 1; got 0")
    assert not (tmp_path / "run").exists()


def test_cli_unknown_flag_exits_with_code_two(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--train.bogus", "3"])
    assert stopped.value.code == 2
    assert "unrecognized arguments: --train.bogus 3" in capsys.readouterr().err


def test_cli_refuses_abbreviated_flags(capsys):
    """--train.epoch must not silently mean --train.epochs."""
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--train.epoch", "3"])
    assert stopped.value.code == 2
    assert "unrecognized arguments: --train.epoch 3" in capsys.readouterr().err


@pytest.mark.slow
def test_background_refresh_is_deterministic_and_resumes_to_the_same_model(tmp_path, monkeypatch):
    """index.refresh_lag: the epoch-end refresh embeds a weight snapshot on a thread and takes
    effect 3 iterations later, whatever the machine's speed; a crash while it is pending (the
    checkpoint holds the snapshot) resumes to the bitwise-identical model."""
    lagged = {"index.refresh_lag": 3}
    first = train(_config(tmp_path / "a", **lagged), progress=False)
    second = train(_config(tmp_path / "b", **lagged), progress=False)
    for name, value in _model(tmp_path / "a").items():
        torch.testing.assert_close(_model(tmp_path / "b")[name], value, rtol=0, atol=0)
    assert _scores(first.summary) == _scores(second.summary)
    assert first.summary["refreshes"] == 1 + SHORT["train.epochs"]  # initial + every epoch
    saved = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    assert saved["pending_refresh"]["apply_at"] == saved["iteration"] + 3

    original = Trainer.step

    def crash_in_second_epoch(self, batch):
        if self.iteration == SHORT["train.iterations_per_epoch"] + 1:  # refresh still pending
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(Trainer, "step", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(_config(tmp_path / "c", **lagged), progress=False)
    monkeypatch.setattr(Trainer, "step", original)
    resumed = train(_config(tmp_path / "c", **lagged), progress=False)
    for name, value in _model(tmp_path / "a").items():
        torch.testing.assert_close(_model(tmp_path / "c")[name], value, rtol=0, atol=0)
    assert _scores(resumed.summary) == _scores(first.summary)


def _record_precisions(monkeypatch) -> list[tuple[str, int]]:
    """``(precision, rows)`` of every embedding pass the index upkeep makes."""
    import magnetdml.training.index_upkeep as upkeep

    passes, real = [], upkeep.embed_dataset

    def spy(model, dataset, **options):
        passes.append((options.get("precision", "float32"), len(dataset)))
        return real(model, dataset, **options)

    monkeypatch.setattr(upkeep, "embed_dataset", spy)
    return passes


@pytest.mark.parametrize("lag", [0, 2])
def test_a_bfloat16_refresh_trains_on_it_and_keeps_a_float32_final_index(
    tmp_path, monkeypatch, lag
):
    passes = _record_precisions(monkeypatch)
    # no per-epoch evaluation: it would embed the training set in float32 after epoch 1 too
    options = {"index.refresh_precision": "bfloat16", "index.refresh_lag": lag, "eval.every": 0}
    t = Trainer(_config(tmp_path / "a", **options).validate(), Distributed.setup("cpu"))
    t.build_initial_index()
    n = len(t.labels)
    assert passes == [("bfloat16", n)] and not t.upkeep.index_current(0)
    t.close()
    passes.clear()
    summary = train(_config(tmp_path / "b", **options), progress=False).summary
    # the initial fit and the refresh after epoch 1 train on bfloat16; the final index,
    # which the run keeps and kNC scores with, is fitted on float32 embeddings, which the
    # final evaluation reuses (a background refresh embeds a copy of the weights on its
    # thread, which it does not: one more float32 pass, as with float32 refreshes)
    final = [("float32", n)] * (2 if lag else 1)
    assert passes == [("bfloat16", n), ("bfloat16", n), *final]
    assert summary["refreshes"] == 3 and np.isfinite(summary["knc_error"])


def test_evaluation_refits_a_bfloat16_index_on_float32_embeddings(tmp_path):
    config = _config(tmp_path / "run", **{"index.refresh_precision": "bfloat16"}).validate()
    t = Trainer(config, Distributed.setup("cpu"))
    t.build_initial_index()  # bfloat16: not what evaluation scores against
    for _ in range(3):
        t.step(t.sampler.next_batch())
    t.refresh_index()  # up to date, but still bfloat16
    assert t.upkeep.index_iteration == t.iteration and not t.upkeep.index_current(t.iteration)
    # a checkpoint records no iteration for it: a resumed run and `magnetdml evaluate`
    # refit it on float32 embeddings too
    assert t.upkeep.state_dict()["index_iteration"] == -1
    assert weights_state(t)["index_iteration"] == -1  # the best epoch's, for early stopping
    trained = t.index.assignments_.copy()
    metrics = t.evaluate()
    np.testing.assert_array_equal(t.index.assignments_, trained)  # the training index stays
    fresh = copy.deepcopy(t.index).refresh(t.train_embeddings(), t.labels)
    knc = KNearestClusters(neighbours=config.eval.neighbours).fit(fresh, t.sigma2)
    test = t.splits.test
    assert metrics["knc_error"] == float(np.mean(knc.predict(t.embed(test)) != test.labels))


def test_a_checkpointed_float32_index_stays_current_under_bfloat16_refreshes(tmp_path):
    """The final index is float32 even when the refreshes are bfloat16: a run resumed from the
    checkpoint after it (killed while drawing its pictures, say) must score with that index as
    the uninterrupted run did, not refit it."""
    config = _config(tmp_path / "run", **{"index.refresh_precision": "bfloat16"}).validate()
    t = Trainer(config, Distributed.setup("cpu"))
    t.build_initial_index()
    for _ in range(3):
        t.step(t.sampler.next_batch())
    t.refresh_index(final=True)
    assert t.upkeep.index_current(t.iteration)
    timing = {"refreshes": t.upkeep.refreshes, "refresh_seconds": 0.0}
    saved = {**t.upkeep.state_dict(), "iteration": t.iteration, "timing": timing}
    other = _config(tmp_path / "resumed", **{"index.refresh_precision": "bfloat16"})
    resumed = Trainer(other.validate(), Distributed.setup("cpu"))
    resumed.upkeep.load_state_dict(saved)
    assert resumed.upkeep.index_current(t.iteration)
    t.refresh_index()  # a bfloat16 one: the checkpoint says so, and the resumed run refits
    resumed.upkeep.load_state_dict(
        {**t.upkeep.state_dict(), "iteration": t.iteration, "timing": timing}
    )
    assert not resumed.upkeep.index_current(t.iteration)
    t.close()
    resumed.close()


def test_a_pending_float32_refresh_resumes_in_float32(tmp_path):
    """With a refresh lag the final (float32) refresh runs in the background; a checkpoint
    taken while it is pending must redo it in float32, not in the refreshes' bfloat16."""
    options = {"index.refresh_precision": "bfloat16", "index.refresh_lag": 2}
    t = Trainer(_config(tmp_path / "run", **options).validate(), Distributed.setup("cpu"))
    t.build_initial_index()
    for _ in range(3):
        t.step(t.sampler.next_batch())
    t.refresh_index(final=True)
    timing = {"refreshes": t.upkeep.refreshes, "refresh_seconds": 0.0}
    saved = {**t.upkeep.state_dict(), "iteration": t.iteration, "timing": timing}
    assert saved["pending_refresh"]["precision"] == "float32"
    resumed = Trainer(_config(tmp_path / "resumed", **options).validate(), Distributed.setup("cpu"))
    resumed.build_initial_index()
    resumed.upkeep.load_state_dict(saved)
    resumed.apply_pending_refresh(wait=True)
    assert resumed.upkeep.index_precision == "float32"
    assert resumed.upkeep.index_current(t.iteration)
    t.close()
    resumed.close()


@pytest.mark.parametrize("lag", [0, 2])
def test_the_final_index_is_built_after_the_training_time_is_taken(tmp_path, monkeypatch, lag):
    # Refreshes that later steps train on are training time; the one after the last epoch
    # only serves kNC evaluation, so it must not count (as for the losses without an index).
    seen = []
    real = Trainer.refresh_index

    def spy(self, **options):
        seen.append(self.timing["train_seconds"])
        return real(self, **options)

    monkeypatch.setattr(Trainer, "refresh_index", spy)
    summary = train(_config(tmp_path, **{"index.refresh_lag": lag}), progress=False).summary
    initial, after_epoch_1, final = seen
    assert initial == 0.0 and after_epoch_1 == 0.0  # epoch 1's time is added after its refresh
    assert final == summary["train_seconds"] > 0.0  # all training time was taken before it


def test_a_loss_that_normalises_inside_is_evaluated_on_unit_vectors(tmp_path):
    """Triplet trains only directions (it L2-normalises inside): its model normalises its
    output, so kNN / kNC / exports never see the untrained norm; Magnet's does not."""

    def norms(**overrides):
        out = tmp_path / str(len(list(tmp_path.iterdir())))  # a fresh folder each
        t = Trainer(_config(out, **overrides).validate(), Distributed.setup("cpu"))
        return np.linalg.norm(t.embed(t.splits.test), axis=1)

    np.testing.assert_allclose(norms(**{"loss.name": "triplet"}), 1.0, atol=1e-5)
    assert np.ptp(norms(**{"loss.name": "triplet", "loss.normalize": False})) > 0.1
    assert np.ptp(norms(**{"loss.name": "magnet"})) > 0.1
    np.testing.assert_allclose(
        norms(**{"loss.name": "magnet", "model.normalize": True}), 1.0, atol=1e-5
    )


def test_normalising_the_output_leaves_triplet_training_unchanged(tmp_path):
    """The loss's gradient is the same whether the model or only the loss normalises, and the
    softmax warm start trains on the head's raw output either way."""

    def trainer(model_normalize: bool) -> Trainer:
        config = _config(
            tmp_path / str(model_normalize),
            **{"loss.name": "triplet", "model.normalize": model_normalize},
        )
        return Trainer(config.validate(), Distributed.setup("cpu"))

    plain, normalised = trainer(False), trainer(True)
    plain.model.normalize = False  # what the model did before the fix
    assert normalised.model.normalize
    normalised.model.load_state_dict(plain.model.state_dict())
    x, y = plain.splits.train.get_batch(np.arange(40))
    grads = []
    for t in (plain, normalised):
        t.model.zero_grad()
        t.loss_fn(t.model(x), y).backward()
        grads.append(t.model.head.weight.grad.clone())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)

    from magnetdml.training.warm_start import warm_start

    for t in (plain, normalised):
        torch.manual_seed(0)
        warm_start(t, 1)
    torch.testing.assert_close(plain.model.head.weight, normalised.model.head.weight)


def test_a_diverging_run_says_so_in_one_line(tmp_path, capsys):
    code = main(
        [
            "train",
            "--out",
            str(tmp_path / "run"),
            "--quiet",
            "--train.lr",
            "1e12",
            "--train.threads",
            "1",
            "--epochs",
            "3",
            "--train.iterations_per_epoch",
            "20",
            "--eval.plots",
            "false",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "diverged" in err and "lower train.lr" in err


@pytest.mark.parametrize("scale", [1e19, 1e30])
def test_huge_finite_embeddings_are_refused_before_faiss(scale):
    from magnetdml import ClusterIndex, evaluate

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((40, 8)) * scale).astype(np.float64)
    y = np.repeat(np.arange(4), 10)
    with pytest.raises(ValueError, match=r"squared distances between 8-d points overflow"):
        ClusterIndex(clusters_per_class=2).fit(x, y)
    with pytest.raises(ValueError, match="rescale them"):
        evaluate(x, y, metrics=["knn_error"])


def test_bfloat16_refreshes_on_a_cpu_without_its_kernels_warn_once(tmp_path, monkeypatch, capsys):
    import magnetdml.models.inference as inference

    monkeypatch.setattr(inference, "_has_bfloat16_kernels", lambda: False)
    options = {"index.refresh_precision": "bfloat16", "train.epochs": 1}
    train(_config(tmp_path / "run", **options), progress=False)
    err = capsys.readouterr().err
    assert err.count("warning: index.refresh_precision bfloat16 on a CPU without") == 1
