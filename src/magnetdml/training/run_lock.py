"""One process per run folder: ``RUN/.lock``, held with ``flock`` while a run trains.

Two ``magnetdml train`` processes on one ``--out`` would both append to ``metrics.jsonl`` and
overwrite each other's checkpoints; the second is refused instead, with a line naming the
holder (its pid, host and start time, which the lock file holds). The kernel drops an
``flock`` when its process ends, even by ``kill -9``: a lock never outlives its holder, so
there is nothing stale to clean up. Where ``fcntl`` does not exist (Windows) folders are not
locked.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not locked
    fcntl = None

LOCK = ".lock"


class RunLock:
    """An exclusive lock on ``folder`` (created if missing); :meth:`release` frees it."""

    def __init__(self, folder: Path, fd: int | None) -> None:
        self.folder, self._fd = Path(folder), fd

    @classmethod
    def acquire(cls, folder: str | os.PathLike) -> RunLock:
        """Lock ``folder`` or raise ``ValueError`` naming the process that holds it."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            return cls(folder, None)
        path = folder / LOCK
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ValueError(
                    f"run folder {str(folder)!r} is in use by another magnetdml "
                    f"process ({holder(folder) or 'unknown holder'}); wait for it "
                    "to end, or choose another --out"
                ) from None
            except OSError:  # a file system without flock (some network mounts): unlocked
                os.close(fd)
                return cls(folder, None)
            # the holder before us may have unlinked the file as it released it: our lock is
            # then on a file nobody else sees, so take the lock of the current file instead
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(
            fd,
            f"pid {os.getpid()} on {socket.gethostname()}, since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}".encode(),
        )
        return cls(folder, fd)

    def release(self) -> None:
        """Free the lock (and remove the lock file); a second call does nothing."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            (self.folder / LOCK).unlink(missing_ok=True)
        except OSError:
            pass  # the folder went away (an overwrite swapped it out)
        os.close(fd)  # closing the last descriptor drops the flock

    def moved(self, folder: Path) -> None:
        """The locked folder was renamed to ``folder`` (the descriptor follows the file)."""
        self.folder = Path(folder)

    def __del__(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


def holder(folder: str | os.PathLike) -> str | None:
    """Who holds ``folder``'s lock ("pid N on HOST, since T"), or None when it is free."""
    path = Path(folder) / LOCK
    if fcntl is None or not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return path.read_text().strip() or "unknown holder"
        except OSError:
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
