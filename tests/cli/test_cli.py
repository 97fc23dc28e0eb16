"""The command line explains itself: fast top-level help, suggestions for typos."""

from __future__ import annotations

import subprocess
import sys

import pytest

from magnetdml.cli import main


def test_top_level_help_and_version_do_not_import_torch():
    """What makes ``magnetdml --help`` answer at once: nothing heavy is imported for it."""
    code = (
        "import sys\nfrom magnetdml.cli import main\n"
        "for argv in (['--help'], ['--version']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "print('torch' in sys.modules, 'faiss' in sys.modules, 'matplotlib' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "False False False"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["trian"], "unknown command 'trian'; did you mean 'train'?"),
        (["train", "--train.epoch", "3"], "did you mean '--train.epochs'?"),
        (
            ["search", "--space.alpah", "1:2", "--trials", "1", "--out", "x"],
            "did you mean '--space.alpha'?",
        ),
        (
            ["train", "--nonsense"],
            "unrecognized arguments: --nonsense (see magnetdml train --help)",
        ),
    ],
)
def test_typos_get_one_line_with_a_suggestion(argv, expected, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert expected in capsys.readouterr().err


def test_subcommand_help_still_lists_its_flags(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "--split {test,unseen,val,all}" in capsys.readouterr().out


def test_interrupt_before_the_first_epoch_says_nothing_was_saved(tmp_path, monkeypatch, capsys):
    from magnetdml.training.trainer import Trainer

    def interrupt(self, batch):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "step", interrupt)
    out = tmp_path / "run"
    assert (
        main(["train", "--out", str(out), "--quiet", "--epochs", "1", "--eval.plots", "false"])
        == 130
    )
    assert "no epoch had finished, so nothing was saved" in capsys.readouterr().err


def test_evaluate_prints_its_results_even_when_it_cannot_write_them(tmp_path, monkeypatch, capsys):
    from magnetdml.training import runs

    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--out",
                str(out),
                "--quiet",
                "--epochs",
                "1",
                "--eval.plots",
                "false",
                "--train.iterations_per_epoch",
                "3",
            ]
        )
        == 0
    )
    capsys.readouterr()

    def refuse(run, results):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(runs, "write_evaluation", refuse)
    assert main(["evaluate", str(out), "--split", "test"]) == 0
    captured = capsys.readouterr()
    assert "knc_error" in captured.out
    assert "could not write" in captured.err and "results above are complete" in captured.err


def test_an_os_error_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    from magnetdml.training import atomic_files, run_dir

    def full_disk(path, write):
        raise OSError(28, "No space left on device", str(path))

    # config.json goes through write_json, the checkpoint through run_dir's own import
    monkeypatch.setattr(atomic_files, "atomic_write", full_disk)
    monkeypatch.setattr(run_dir, "atomic_write", full_disk)
    assert main(["train", "--out", str(tmp_path / "run"), "--quiet", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err
    assert "config.json" in err
