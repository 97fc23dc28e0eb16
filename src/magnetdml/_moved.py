"""Old import paths of modules that moved into the layer folders keep working, with a warning.

``import magnetdml.runs`` (or ``from magnetdml.index import ClusterIndex``) gives a module under
the old name whose every attribute is the new module's, and warns that the path is deprecated:
code written against the flat layout runs unchanged while its users move to the new paths.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: old module -> where it lives now
MOVED = {
    "magnetdml.index": "magnetdml.clustering.index",
    "magnetdml.kmeans": "magnetdml.clustering.kmeans",
    "magnetdml.agglomerative": "magnetdml.clustering.agglomerative",
    "magnetdml.balanced_sampler": "magnetdml.sampling.balanced",
    "magnetdml.batch_stream": "magnetdml.sampling.batch_stream",
    "magnetdml.runs": "magnetdml.training.runs",
    "magnetdml.machine": "magnetdml.training.machine",
    "magnetdml.compare": "magnetdml.experiments.compare",
    "magnetdml.search": "magnetdml.experiments.search",
    "magnetdml.report": "magnetdml.reporting.report",
    "magnetdml.plots": "magnetdml.reporting.plots",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec):
        return None                     # a plain module, filled in below

    def exec_module(self, module) -> None:
        # forward, rather than copy, so the alias sees every attribute the real one has
        # (the real module keeps its own name and spec: pickles and reloads point to it)
        real = importlib.import_module(self.target)
        module.__getattr__ = lambda attribute: getattr(real, attribute)
        module.__dir__ = lambda: dir(real)
        module.__doc__ = real.__doc__


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Resolves the names of ``MOVED`` to their new modules."""

    def find_spec(self, name, path=None, target=None):
        new = MOVED.get(name)
        if new is None:
            return None
        warnings.warn(f"{name} moved to {new}; import it from there (the old path will be "
                      "removed in a later release)", DeprecationWarning, stacklevel=3)
        return importlib.util.spec_from_loader(name, _Alias(new))


def install() -> None:
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
