"""Progress for every wait a user notices: a phase line and a tqdm bar, one switch to silence
them (``magnetdml --quiet COMMAND``, :func:`set_quiet`).

Bars are drawn on stderr only once their phase has lasted :data:`DELAY` seconds, so the many
short passes (an index refresh of a small dataset, a quick evaluation) stay silent while the
long ones (embedding 60,000 images, k-means over many classes, a neighbour search over a
million queries) show where the time goes. Phase lines are for the few top-level steps of a
command (warm start, first index, experiment stages) and are always printed unless quiet.

Every module that shows progress goes through here (``from .._progress import bar, phase``);
``quiet`` is process-wide state set once by the command line (worker processes of
``--jobs N`` get ``progress=False`` from their caller instead).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

DELAY = 2.0  # seconds a phase lasts before its bar appears
#: seconds between a bar's redraws when stderr is not a terminal (a log file, a pipe, a
#: batch job's output): each redraw is another ``\r``-joined copy of the bar in the file
LOG_INTERVAL = 30.0
_state = {"quiet": False}


def set_quiet(quiet: bool) -> None:
    """Silence (or restore) every phase line and bar of this process."""
    _state["quiet"] = bool(quiet)


def is_quiet() -> bool:
    return _state["quiet"]


def enabled(progress: bool = True) -> bool:
    """Whether a caller asking for ``progress`` gets it: not when the process is quiet."""
    return bool(progress) and not _state["quiet"]


def phase(message: str, *, progress: bool = True) -> None:
    """One line on stderr saying what starts now (between bars, never through one)."""
    if enabled(progress):
        from tqdm.auto import tqdm  # here, not above: ``magnetdml --help`` imports this module

        tqdm.write(message, file=sys.stderr)


def bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    initial: int = 0,
    desc: str = "",
    unit: str = "it",
    progress: bool = True,
    leave: bool = False,
    delay: float | None = None,
) -> Any:
    """A tqdm bar on stderr that appears after ``delay`` seconds (default :data:`DELAY`; 0:
    at once), at ``initial`` of ``total`` (a resumed run); disabled when quiet or not
    ``progress``. Redrawn at most every :data:`LOG_INTERVAL` seconds when stderr is not a
    terminal. Use it as tqdm: iterate, or ``update(n)`` and ``close()``."""
    from tqdm.auto import tqdm

    terminal = getattr(sys.stderr, "isatty", lambda: False)()
    return tqdm(
        iterable,
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        leave=leave,
        delay=DELAY if delay is None else delay,
        disable=not enabled(progress),
        dynamic_ncols=True,
        mininterval=0.1 if terminal else LOG_INTERVAL,
        file=sys.stderr,
    )


@contextmanager
def scope(progress: bool) -> Iterator[None]:
    """Within it, quiet unless ``progress``: a ``train(progress=False)`` (e.g. a worker of
    ``--jobs N``) silences the bars of the passes it runs too."""
    before = _state["quiet"]
    _state["quiet"] = before or not progress
    try:
        yield
    finally:
        _state["quiet"] = before


def honours_progress(function: Callable) -> Callable:
    """Run ``function(..., progress=P)`` inside :func:`scope` ``(P)``, with ``P`` false when
    the process is quiet."""

    @functools.wraps(function)
    def wrapper(*args, progress: bool = True, **kwargs):
        with scope(progress):
            return function(*args, progress=enabled(progress), **kwargs)

    return wrapper
