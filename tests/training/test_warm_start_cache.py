"""``train.warm_start_cache``: a run that loads a stored warm start is bit-for-bit the run that
trained it; runs share a stored warm start exactly when their warm-start inputs agree."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from magnetdml.experiments import RunSpec, runner
from magnetdml.training import apply_overrides, train
from magnetdml.training.config import Config
from magnetdml.training.distributed import Distributed
from magnetdml.training.trainer import Trainer

WARM = {
    "train.threads": 1,
    "train.epochs": 1,
    "train.iterations_per_epoch": 4,
    "train.warm_start_epochs": 1,
    "model.embedding_dim": 16,
    "eval.plots": False,
    "index.clusters_per_class": 2,
    "sampler.classes_per_batch": 5,
}
#: wall-clock fields, and how the warm start was obtained: everything else must agree
UNSTABLE = {
    "run_dir",
    "train_seconds",
    "refresh_seconds",
    "initial_index_seconds",
    "images_per_second",
    "warm_start_seconds",
    "warm_start_loaded",
}


def _run(out, cache, **overrides):
    config = apply_overrides(
        Config(), {**WARM, "out": str(out), "train.warm_start_cache": str(cache), **overrides}
    )
    result = train(config, progress=False)
    model = torch.load(out / "checkpoint.pt", weights_only=False)["model"]
    return result.summary, model


def _scores(summary):
    return {k: v for k, v in summary.items() if k not in UNSTABLE}


def test_a_loaded_warm_start_gives_the_identical_run(tmp_path):
    cache = tmp_path / "cache"
    plain, plain_model = _run(tmp_path / "plain", "")
    stored, stored_model = _run(tmp_path / "stored", cache)
    loaded, loaded_model = _run(tmp_path / "loaded", cache)
    assert (
        plain["warm_start_loaded"],
        stored["warm_start_loaded"],
        loaded["warm_start_loaded"],
    ) == (False, False, True)
    assert len(list(cache.glob("*.pt"))) == 1
    assert _scores(plain) == _scores(stored) == _scores(loaded)
    for name, weights in plain_model.items():
        assert torch.equal(weights, stored_model[name]) and torch.equal(weights, loaded_model[name])


def test_losses_without_weights_share_one_warm_start_and_softmax_trains_its_own(tmp_path):
    cache = tmp_path / "cache"
    magnet, _ = _run(tmp_path / "magnet", cache, **{"loss.name": "magnet"})
    triplet, _ = _run(tmp_path / "triplet", cache, **{"loss.name": "triplet"})
    # softmax draws its classifier from the torch random state first: other warm-start inputs
    softmax, _ = _run(tmp_path / "softmax", cache, **{"loss.name": "softmax"})
    assert (
        magnet["warm_start_loaded"],
        triplet["warm_start_loaded"],
        softmax["warm_start_loaded"],
    ) == (False, True, False)
    assert len(list(cache.glob("*.pt"))) == 2


@pytest.mark.slow
def test_runs_of_other_learning_rates_share_a_warm_start_with_a_fixed_warm_start_lr(tmp_path):
    cache = tmp_path / "cache"
    fixed = {"train.warm_start_lr": 0.05}
    first, _ = _run(tmp_path / "first", cache, **fixed, **{"train.lr": 0.01})
    second, _ = _run(tmp_path / "second", cache, **fixed, **{"train.lr": 0.002})
    softmax, _ = _run(tmp_path / "softmax", cache, **fixed, **{"loss.name": "softmax"})
    softmax_again, _ = _run(
        tmp_path / "softmax2", cache, **fixed, **{"loss.name": "softmax", "train.lr": 0.3}
    )
    assert [r["warm_start_loaded"] for r in (first, second, softmax, softmax_again)] == [
        False,
        True,
        False,
        True,
    ]
    # the warm start's rate is the default warm start's when it equals train.lr
    plain, plain_model = _run(tmp_path / "plain", "", **{"train.lr": 0.05})
    same, same_model = _run(tmp_path / "same", "", **fixed, **{"train.lr": 0.05})
    assert _scores(plain) == _scores(same)


@pytest.mark.parametrize(
    "change",
    [
        {"train.lr": 0.01},
        {"train.seed": 1},
        {"train.warm_start_lr": 0.01},
        {"model.embedding_dim": 8},
        {"data.augment": True},
    ],
)
def test_a_different_warm_start_input_is_never_served_from_the_cache(tmp_path, change):
    cache = tmp_path / "cache"
    _run(tmp_path / "first", cache)
    other, _ = _run(tmp_path / "other", cache, **change)
    assert not other["warm_start_loaded"]
    assert len(list(cache.glob("*.pt"))) == 2


def test_an_unreadable_cache_file_is_retrained_and_rewritten(tmp_path):
    cache = tmp_path / "cache"
    first, _ = _run(tmp_path / "first", cache)
    (stored,) = cache.glob("*.pt")
    stored.write_bytes(b"not a torch file")
    again, _ = _run(tmp_path / "again", cache)
    assert not again["warm_start_loaded"] and _scores(again) == _scores(first)
    third, _ = _run(tmp_path / "third", cache)
    assert third["warm_start_loaded"] and _scores(third) == _scores(first)


def test_a_cache_path_that_is_a_file_is_named_before_any_warm_start_training(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setattr(
        "magnetdml.training.warm_start._train",
        lambda *_: pytest.fail("trained a warm start that could not be stored"),
    )
    with pytest.raises(
        ValueError,
        match="train.warm_start_cache must be a folder.*not-a-folder.*pass another folder",
    ):
        _run(tmp_path / "run", blocker)


def test_the_cache_is_refused_under_several_processes(tmp_path):
    config = apply_overrides(
        Config(),
        {**WARM, "out": str(tmp_path / "run"), "train.warm_start_cache": str(tmp_path / "cache")},
    )
    dist = dataclasses.replace(Distributed.setup("cpu"), world_size=2)
    with pytest.raises(ValueError, match="warm_start_cache.*one process.*torchrun"):
        Trainer(config, dist)


def test_experiments_share_warm_starts_in_their_folder_unless_told_otherwise(tmp_path):
    spec = RunSpec("a", {"loss.name": "magnet"})
    assert runner.run_config(spec, tmp_path).train.warm_start_cache == str(
        tmp_path / runner.WARM_STARTS
    )
    for value in ("", "/elsewhere"):
        config = runner.run_config(spec, tmp_path, overrides={"train.warm_start_cache": value})
        assert config.train.warm_start_cache == value
