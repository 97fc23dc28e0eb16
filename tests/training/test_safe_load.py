"""Run files are read back without running code: a crafted checkpoint or warm-start file is
refused (evaluate, resume) or retrained (the shared warm-start cache), never executed."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from magnetdml.cli import main
from magnetdml.training import Config, apply_overrides, train
from magnetdml.training.safe_load import load_state

FAST = {
    "train.epochs": 1,
    "train.iterations_per_epoch": 3,
    "train.threads": 1,
    "eval.plots": False,
    "sampler.classes_per_batch": 8,
    "sampler.examples_per_class": 6,
}


class _RunsAShellCommand:
    """What an attacker pickles: unpickling it calls os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _poison(path, marker):
    torch.save({"epoch": 1, "model": {}, "payload": _RunsAShellCommand(marker)}, path)


def test_real_run_files_load_with_their_arrays_and_rng_states(tmp_path):
    train(apply_overrides(Config(), {**FAST, "out": str(tmp_path / "run")}), progress=False)
    state = load_state(tmp_path / "run" / "checkpoint.pt")
    assert isinstance(state["index"]["centroids_"], np.ndarray)
    assert state["rng"]["numpy"][0] == "MT19937" and torch.is_tensor(state["rng"]["torch"])


def test_a_crafted_checkpoint_is_refused_by_evaluate_and_resume(tmp_path, capsys):
    run = tmp_path / "run"
    config = apply_overrides(Config(), {**FAST, "train.epochs": 2, "out": str(run)})
    train(config, progress=False)
    marker = tmp_path / "pwned"
    _poison(run / "checkpoint.pt", marker)
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkpoint.pt' holds objects other than tensors" in err
    (run / "metrics.json").unlink()  # an unfinished run: resume reads it
    with pytest.raises(ValueError, match="holds objects other than tensors, numpy arrays"):
        train(config, progress=False)
    assert not marker.exists()


def test_a_poisoned_shared_warm_start_is_retrained_not_run(tmp_path):
    cache = tmp_path / "cache"
    warm = {**FAST, "train.warm_start_epochs": 1, "train.warm_start_cache": str(cache)}
    first = train(apply_overrides(Config(), {**warm, "out": str(tmp_path / "a")}), progress=False)
    (stored,) = cache.glob("*.pt")
    marker = tmp_path / "pwned"
    _poison(stored, marker)
    second = train(apply_overrides(Config(), {**warm, "out": str(tmp_path / "b")}), progress=False)
    assert not marker.exists() and second.summary["warm_start_loaded"] is False
    assert second.summary["knc_error"] == first.summary["knc_error"]  # the same warm start
    assert "key" in load_state(stored)  # rewritten, readable
    shutil.rmtree(cache)
