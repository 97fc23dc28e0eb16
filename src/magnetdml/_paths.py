"""Paths as results files record them: relative, so a file committed from one machine holds no
absolute path of it (``/Users/me/...``) and reads the same in a clone elsewhere.

A results file records the paths of a command run from some folder (the repository, for the
committed ``benchmarks/results/``): :func:`portable_path` writes an absolute path relative to
that folder (``/srv/shared/data`` from ``/srv/repo`` is ``../shared/data``), which is how the
README's own commands name them; relative paths are kept as given.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path


def portable_path(path: str | os.PathLike, start: str | os.PathLike | None = None) -> str:
    """``path`` relative to ``start`` (default: the working folder) when it is absolute;
    unchanged (as a string) when it is relative already."""
    text = os.fspath(path)
    if not os.path.isabs(text):
        return text
    try:
        return os.path.relpath(text, os.fspath(start) if start is not None else os.getcwd())
    except ValueError:  # another drive (Windows): no relative path exists
        return text


def portable_command(words: Sequence[str], start: str | os.PathLike | None = None) -> str:
    """``words`` (an argv) as one shell line, each absolute path word (or the value of a
    ``--flag=/abs/path`` word) written relative to ``start`` (default: the working folder)."""
    out = []
    for word in words:
        flag, equals, value = word.partition("=")
        if word.startswith("-") and equals and os.path.isabs(value):
            word = f"{flag}={portable_path(value, start)}"
        elif os.path.isabs(word):
            word = portable_path(word, start)
        out.append(word)
    return shlex.join(out)


def relative_to(path: str | os.PathLike, base: str | os.PathLike) -> str:
    """``path`` relative to ``base`` (e.g. a run folder inside an experiment folder), both
    resolved; :func:`portable_path` of ``path`` when it lies outside ``base``."""
    try:
        return str(Path(path).resolve().relative_to(Path(base).resolve()))
    except ValueError:
        return portable_path(Path(path).resolve())
