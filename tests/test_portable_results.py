"""Results files hold no absolute path of the machine that wrote them: the committed ones under
``benchmarks/results/``, and the ones ``compare`` writes now (paths relative to the folder the
command ran in)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from magnetdml._paths import portable_command, portable_path, relative_to
from magnetdml.experiments.compare import compare
from magnetdml.training import Config, apply_overrides

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# an absolute POSIX path: "/dir/..." after a quote, space, "=", "(", ... (so "images/s",
# "</td>" and URLs "https://host/..." are not); base64 pictures are dropped first
ABSOLUTE = re.compile(r"""(?:^|[\s"'=(\[,`])(/(?:[\w.+-]+/)+[\w.+-]*)""", re.M)
DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=\s]+")


def absolute_paths(files: list[Path]) -> dict[str, str]:
    """``{path found: file}`` over the text files of ``files``."""
    found = {}
    for path in files:
        try:
            text = DATA_URI.sub("", path.read_text())
        except (UnicodeDecodeError, OSError):
            continue  # pictures, checkpoints
        for match in ABSOLUTE.finditer(text):
            found[match.group(1)] = str(path)
    return found


def test_the_scanner_finds_absolute_paths_only(tmp_path):
    (tmp_path / "a.json").write_text(
        '{"data_dir": "/Users/me/data", "u": "https://x.org/a/b",'
        ' "speed": "120 images/s", "rel": "../shared/data/x"}'
    )
    (tmp_path / "b.md").write_text(
        "`magnetdml train --out=/tmp/run/x` <td>1</td> </p>\n"
        "/srv/data/mnist at the start of a line\n"
    )
    (tmp_path / "c.html").write_text('<img src="data:image/png;base64,iVB/ORw0/KGgo+/AA=">')
    assert set(absolute_paths(sorted(tmp_path.iterdir()))) == {
        "/Users/me/data",
        "/tmp/run/x",
        "/srv/data/mnist",
    }


def test_committed_results_hold_no_absolute_path():
    if not RESULTS.is_dir():
        pytest.skip("benchmarks/results is not part of an sdist")
    tracked = subprocess.run(
        ["git", "ls-files", "benchmarks/results"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    files = [ROOT / name for name in tracked] or sorted(RESULTS.rglob("*"))
    assert absolute_paths([f for f in files if f.is_file()]) == {}


def test_portable_path_and_command():
    assert portable_path("/data/mnist", "/data/work") == "../mnist"
    assert portable_path("runs/x", "/anywhere") == "runs/x"
    assert (
        portable_command(
            [
                "magnetdml",
                "train",
                "--data-dir",
                "/r/data/x",
                "--out=/r/runs/a",
                "--quick",
                "--loss.options",
                "{a: 1}",
            ],
            "/r",
        )
        == "magnetdml train --data-dir data/x --out=runs/a --quick --loss.options '{a: 1}'"
    )
    assert relative_to("/r/exp/run1", "/r/exp") == "run1"


def test_compare_writes_relative_paths_given_absolute_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["magnetdml", "compare", "--out", str(tmp_path / "cmp")])
    config = apply_overrides(
        Config(),
        {
            "train.epochs": 1,
            "train.iterations_per_epoch": 2,
            "train.threads": 1,
            "eval.plots": False,
            "sampler.classes_per_batch": 8,
            "sampler.examples_per_class": 6,
        },
    )
    result = compare(
        config, ["softmax", "triplet"], tmp_path / "cmp", command=portable_command(sys.argv)
    )
    assert result.out == Path("cmp")
    written = [p for p in (tmp_path / "cmp").rglob("*") if p.is_file()]
    assert any(p.name == "results.json" for p in written)
    assert absolute_paths(written) == {}


def test_an_absolute_and_a_relative_init_from_are_the_same_run(tmp_path, monkeypatch):
    """An experiment begun with absolute paths resumes now that it records relative ones."""
    from magnetdml.training import config_to_dict
    from magnetdml.training.run_identity import run_identity

    monkeypatch.chdir(tmp_path)
    absolute = config_to_dict(apply_overrides(Config(), {"model.init_from": str(tmp_path / "p")}))
    relative = config_to_dict(apply_overrides(Config(), {"model.init_from": "p"}))
    other = config_to_dict(apply_overrides(Config(), {"model.init_from": "q"}))
    assert run_identity(absolute) == run_identity(relative) != run_identity(other)
