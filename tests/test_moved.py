"""The flat layout's module paths (before the layer folders) still import, with a warning."""

import importlib
import sys

import pytest

from magnetdml._moved import MOVED


@pytest.mark.parametrize("old,new", sorted(MOVED.items()))
def test_old_path_forwards_to_the_new_module_and_warns(old, new, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        alias = importlib.import_module(old)
    real = importlib.import_module(new)
    public = [name for name in dir(real) if not name.startswith("_")]
    assert public and all(getattr(alias, name) is getattr(real, name) for name in public)
    assert real.__spec__.name == new          # the real module keeps its own identity


def test_from_import_of_an_old_path(monkeypatch):
    monkeypatch.delitem(sys.modules, "magnetdml.runs", raising=False)
    with pytest.warns(DeprecationWarning):
        from magnetdml.runs import load_run
    from magnetdml.training.runs import load_run as real
    assert load_run is real


def test_an_unknown_module_is_still_an_import_error():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("magnetdml.no_such_module")
