"""What the package ships: one version, type information, no machine-specific paths."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

import magnetdml

tomllib = pytest.importorskip("tomllib")    # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_lives_in_one_place():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "magnetdml._version.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", magnetdml.__version__)


def test_the_package_is_typed():
    assert (Path(magnetdml.__file__).parent / "py.typed").is_file()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["magnetdml"]


def test_committed_scripts_and_code_name_no_machine_paths():
    """A fresh clone elsewhere must run them as written (results files keep their provenance)."""
    tracked = subprocess.run(["git", "ls-files", "src", "tests", "benchmarks/*.py",
                              "benchmarks/**/*.sh", "README.md", ".ci"], cwd=ROOT,
                             capture_output=True, text=True, check=False).stdout.split()
    if not tracked:                       # not a git checkout (e.g. an sdist): nothing to check
        return
    offending = [name for name in tracked if (ROOT / name).is_file()
                 and re.search(r"/work/|/home/\w+", (ROOT / name).read_text(errors="ignore"))
                 and name != "tests/test_packaging.py"]
    assert not offending, offending
