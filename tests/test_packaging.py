"""What the package ships: one version, type information, no machine-specific paths."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import magnetdml

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_lives_in_one_place():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "magnetdml._version.__version__"
    }
    assert re.fullmatch(r"\d+\.\d+\.\d+", magnetdml.__version__)


def test_the_package_is_typed():
    assert (Path(magnetdml.__file__).parent / "py.typed").is_file()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["magnetdml"]


def test_committed_scripts_and_code_name_no_machine_paths():
    """A fresh clone elsewhere must run them as written (results files keep their provenance)."""
    tracked = subprocess.run(
        [
            "git",
            "ls-files",
            "src",
            "tests",
            "benchmarks/*.py",
            "benchmarks/**/*.sh",
            "README.md",
            ".ci",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if not tracked:  # not a git checkout (e.g. an sdist): nothing to check
        return
    offending = [
        name
        for name in tracked
        if (ROOT / name).is_file()
        and re.search(r"/work/|/home/\w+", (ROOT / name).read_text(errors="ignore"))
        and name != "tests/test_packaging.py"
    ]
    assert not offending, offending


def test_metadata_names_the_project_urls_and_authors():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    urls = {key.lower(): value for key, value in project["urls"].items()}
    assert {"homepage", "documentation", "issues", "changelog"} <= set(urls)
    assert all(u.startswith("https://github.com/magnetdml/magnetdml") for u in urls.values())
    assert urls["changelog"].endswith("/CHANGELOG.md") and (ROOT / "CHANGELOG.md").is_file()
    assert project["authors"] == [{"name": "magnetdml developers"}]


def test_faiss_and_tensorboard_are_extras_not_dependencies():
    """A faiss-gpu user installs without a second, competing faiss package."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith(("faiss", "tensorboard"))]
    extras = project["optional-dependencies"]
    assert extras["faiss"] == ["faiss-cpu>=1.7.4"]
    assert extras["tensorboard"][0].startswith("tensorboard")
    readme = (ROOT / "README.md").read_text()
    assert "[dev,faiss" in readme and "tensorboard --logdir runs/" in readme


def test_the_version_shows_in_the_cli_and_in_config_json(tmp_path, capsys):
    from magnetdml.cli import main
    from magnetdml.training import Config, config_from_dict, config_to_dict
    from magnetdml.training.run_dir import RunDir
    from magnetdml.training.run_identity import run_identity

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"magnetdml {magnetdml.__version__}"
    config = config_to_dict(Config())
    RunDir.open(tmp_path / "run", config)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["magnetdml_version"] == magnetdml.__version__
    assert config_from_dict(saved) == Config()  # read back: not a config field
    assert run_identity(saved) == run_identity(config)  # runs of two versions are one run
    RunDir.open(tmp_path / "run", config)  # and the folder reopens


@pytest.mark.slow
def test_the_sdist_holds_what_the_tests_need(tmp_path):
    """Built from the checkout as CI does: tests, the example a test runs, docs, changelog."""
    if not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout (this is an sdist or an installed copy)")
    pytest.importorskip(
        "setuptools",
        reason="builds the sdist with setuptools (CI also runs "
        "the suite from the sdist that python -m build makes)",
    )
    code = "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with tarfile.open(tmp_path / done.stdout.strip().splitlines()[-1]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    needed = {
        "pyproject.toml",
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        "examples/own_loop.py",
        "tests/conftest.py",
        "docs/design.md",
        "src/magnetdml/py.typed",
        "src/magnetdml/_version.py",
    }
    assert needed <= names, needed - names
    tests = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").rglob("*.py")}
    assert tests <= names, tests - names
