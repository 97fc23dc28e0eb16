"""Progress: phase lines and bars on stderr for long waits, none with ``--quiet`` (global or
the command's own), and ``train(progress=False)`` silences the passes it runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from magnetdml import _progress
from magnetdml.cli import main
from magnetdml.training.embed import embed

FAST = [
    "--epochs",
    "1",
    "--train.iterations_per_epoch",
    "2",
    "--train.threads",
    "1",
    "--eval.plots",
    "false",
    "--model.embedding_dim",
    "8",
    "--index.clusters_per_class",
    "2",
]


@pytest.fixture
def no_delay(monkeypatch):
    """Bars appear at once (they wait DELAY seconds otherwise: short passes stay silent)."""
    monkeypatch.setattr(_progress, "DELAY", 0.0)


def test_scope_silences_and_restores():
    assert not _progress.is_quiet()
    with _progress.scope(False):
        assert _progress.is_quiet() and not _progress.enabled(True)
        with _progress.scope(True):  # an inner caller cannot undo an outer quiet
            assert _progress.is_quiet()
    assert not _progress.is_quiet() and _progress.enabled(True) and not _progress.enabled(False)


def test_an_embedding_pass_shows_a_bar_unless_quiet(no_delay, capsys):
    model = torch.nn.Linear(4, 2)
    x = np.zeros((300, 4), np.float32)
    embed(model, x)
    assert "embedding" in capsys.readouterr().err
    with _progress.scope(False):
        embed(model, x)
    assert capsys.readouterr().err == ""


def test_train_shows_its_phases_and_global_quiet_silences_everything(no_delay, tmp_path, capsys):
    assert main(["train", *FAST, "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    for shown in (
        "building the first cluster index",
        "clustering each class",
        "embedding",
        "neighbour search",
        "kNC test error",
    ):
        assert shown in err, shown
    assert main(["--quiet", "train", *FAST, "--out", str(tmp_path / "b")]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "kNC test error:" in captured.out  # the result itself is not progress
    assert main(["train", "--quiet", *FAST, "--out", str(tmp_path / "c")]) == 0
    assert capsys.readouterr().err == ""
    assert not _progress.is_quiet()  # the command's quiet ended with it


def test_every_command_takes_quiet():
    from magnetdml.cli import COMMANDS, _subcommand_options, build_parser

    parser = build_parser()
    assert "--quiet" in parser._option_string_actions  # magnetdml --quiet COMMAND
    for name in COMMANDS:
        assert "--quiet" in _subcommand_options(parser, name), name


def test_a_log_file_gets_a_few_lines_of_a_training_bar_not_one_per_step(no_delay, tmp_path, capsys):
    """stderr is not a terminal here (pytest captures it): the training bar is drawn when it
    starts and ends, not at each of its 40 steps, and a terminal would get the usual rate."""
    argv = ["train", *FAST, "--train.iterations_per_epoch", "40", "--out", str(tmp_path / "a")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    drawn = [part for part in err.replace("\r", "\n").splitlines() if "training" in part]
    assert drawn and len(drawn) <= 4, drawn
    assert any("40/40" in part for part in drawn)  # the final state is written


def test_a_bar_redraws_often_on_a_terminal_and_rarely_in_a_log(monkeypatch):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert _progress.bar(total=3).mininterval < 1
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert _progress.bar(total=3).mininterval == _progress.LOG_INTERVAL
