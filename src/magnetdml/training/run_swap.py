"""What keeps a run folder whole while it changes: the ``--overwrite`` swap and Ctrl-C.

``--overwrite`` trains the new run in ``.NAME.new`` beside the old folder ``NAME``; its first
checkpoint swaps the two (one atomic ``renameat2(RENAME_EXCHANGE)`` on Linux, two renames
elsewhere) and the old run, renamed ``.NAME.old``, is deleted. A kill before the swap leaves
the old run as it was; a kill between the two renames is completed by the next open.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
from pathlib import Path

CHECKPOINT = "checkpoint.pt"


def staging_path(path: Path, kind: str = "new") -> Path:
    return path.parent / f".{path.name}.{kind}"


def link_staging(staging: Path, final: Path) -> Path | None:
    """After the swap, the staging name points at the new run (a relative symlink) until the
    run ends: whatever opened its files by their staging paths (a metrics.csv writer, the
    TensorBoard writer) keeps writing into the run. None where symlinks cannot be made."""
    try:
        staging.symlink_to(final.name, target_is_directory=True)
    except OSError:
        return None
    return staging


def remove_staging(path: Path) -> None:
    """Remove the staging name of run folder ``path``: a link, or a killed run's folder."""
    staging = staging_path(path)
    if staging.is_symlink():
        staging.unlink(missing_ok=True)
    else:
        shutil.rmtree(staging, ignore_errors=True)


def finish_swap(path: Path) -> None:
    """Complete an ``--overwrite`` swap a kill interrupted: the new run (it has a checkpoint)
    takes the folder's place; the old one's leftovers go."""
    staging, old = staging_path(path), staging_path(path, "old")
    if (
        not path.exists()
        and old.exists()
        and not staging.is_symlink()
        and (staging / CHECKPOINT).exists()
    ):
        os.replace(staging, path)
    if path.exists() and old.exists():
        shutil.rmtree(old, ignore_errors=True)


def exchange(a: Path, b: Path) -> bool:
    """Swap the folders ``a`` and ``b`` in one atomic step (Linux ``renameat2``); False where
    that is not available (then two renames do it)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


@contextlib.contextmanager
def deferred_interrupt():
    """Hold a Ctrl-C (SIGINT) back until the block ends, then raise ``KeyboardInterrupt``:
    torch's zip writer turns an interrupt in the middle of a write into a ``RuntimeError``
    traceback. Only in the main thread with Python's own handler (elsewhere: no change)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    caught = []
    signal.signal(signal.SIGINT, lambda number, frame: caught.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if caught:
        raise KeyboardInterrupt
