"""The repository's ``benchmarks/`` scripts, loaded as modules by their tests.

The sdist has no ``benchmarks/`` folder, so a test of a script skips there
(:func:`needs_script`)."""

import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def needs_script(filename: str):
    """Skip the tests of ``benchmarks/filename`` outside the repository."""
    return pytest.mark.skipif(
        not (BENCHMARKS / filename).is_file(),
        reason="outside the repository (the sdist has no benchmarks/)",
    )


def load_script(filename: str):
    """``benchmarks/filename`` imported as a module."""
    path = BENCHMARKS / filename
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
