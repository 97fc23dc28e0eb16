"""Files written whole or not at all: a temporary file beside the target, flushed and
fsynced, then moved into place with ``os.replace`` (atomic on POSIX), with the permissions a
plain ``open(path, "w")`` would give."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _process_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: The permissions a plain ``open(path, "w")`` would give (mkstemp's are 0600: a run folder
#: written that way is unreadable to collaborators and other users).
FILE_MODE = 0o666 & ~_process_umask()


def atomic_write(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON at ``path``, written atomically (numpy values as lists)."""
    atomic_write(
        path, lambda f: f.write((json.dumps(data, indent=2, default=plain_json) + "\n").encode())
    )


def plain_json(value: Any) -> Any:
    """``json.dumps``'s ``default``: numpy arrays and scalars as plain lists and numbers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
