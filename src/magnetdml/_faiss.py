"""The one place magnetdml imports faiss: whichever build the user has (faiss-cpu from PyPI,
faiss-gpu from conda or a CUDA build; each installs the same ``faiss`` module).

faiss is not an unconditional dependency, so that ``pip install magnetdml`` beside a faiss-gpu
install does not bring a second, competing ``faiss`` package. The README's install line asks
for the ``faiss`` extra (``pip install 'magnetdml[faiss]'``, which adds faiss-cpu). Without any
faiss, ``import magnetdml`` still works; the first k-means or neighbour search raises an
``ImportError`` whose one line says how to get it (the CLI prints that line).

Callers write ``from .._faiss import faiss`` and use ``faiss.X`` as usual: the module is
imported on the first attribute access.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

INSTALL_HINT = (
    "magnetdml needs faiss (k-means and nearest-neighbour search) and none is "
    "installed: pip install 'magnetdml[faiss]' (adds faiss-cpu), or install "
    "faiss-gpu (e.g. conda install -c pytorch faiss-gpu)"
)


def load_faiss() -> ModuleType:
    """The installed ``faiss`` module, or an ``ImportError`` with :data:`INSTALL_HINT`."""
    try:
        return importlib.import_module("faiss")
    except ImportError:
        raise ImportError(INSTALL_HINT) from None


class _LazyFaiss:
    """Stands for the ``faiss`` module; imports it on first use."""

    def __getattr__(self, name: str):
        return getattr(load_faiss(), name)

    def __repr__(self) -> str:
        return "<faiss, imported on first use>"


faiss = _LazyFaiss()


@contextmanager
def faiss_threads(threads: int | None) -> Iterator[None]:
    """faiss's OpenMP thread count set to ``threads`` inside the block (``None``: left as it
    is), and the count it had restored after, whatever the block raises."""
    before = faiss.omp_get_max_threads()
    if threads is not None:
        faiss.omp_set_num_threads(max(1, threads))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
