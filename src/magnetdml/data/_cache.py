"""A small on-disk cache of decoded arrays (decoding 60k JPEGs takes a minute; loading 180 MB
of ``.npy`` takes a fraction of a second).

Location: the ``cache_dir`` option, else ``$MAGNETDML_CACHE``, else ``~/.cache/magnetdml``.
Entries are keyed by the source file's resolved path, size and modification time plus the
decoding options, so an edited source or a different resize never reads a stale entry. Each
entry is a folder of ``.npy`` files (no pickle; loadable memory-mapped) written to a temporary
name and renamed into place, so an interrupted write never leaves a half entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$MAGNETDML_CACHE``, else ``~/.cache/magnetdml``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("MAGNETDML_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "magnetdml"


def source_key(path: Path) -> dict[str, Any]:
    """Identity of a source file or folder: resolved path, size and mtime."""
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cached_arrays(
    tag: str,
    key: dict[str, Any],
    build: Callable[[], dict[str, np.ndarray]],
    *,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    mmap: bool = False,
) -> tuple[dict[str, np.ndarray], bool]:
    """Return ``(arrays, hit)``: the cached arrays for ``key``, building and storing them on a miss.

    A cache that cannot be written (read-only home, full disk) only costs the rebuild next time:
    it is logged, never raised.
    """
    if not use_cache:
        return build(), False
    text = json.dumps(dict(key, version=CACHE_VERSION), sort_keys=True, default=str)
    entry = resolve_cache_dir(cache_dir) / f"{tag}-{hashlib.sha1(text.encode()).hexdigest()[:16]}"
    if (entry / "key.json").exists():
        try:
            names = json.loads((entry / "key.json").read_text())["arrays"]
            mode = "r" if mmap else None
            return {
                n: np.load(entry / f"{n}.npy", mmap_mode=mode, allow_pickle=False) for n in names
            }, True
        except (OSError, ValueError, KeyError) as err:  # damaged entry: rebuild it
            log.warning("cache entry %s unreadable (%s); rebuilding", entry, err)
    arrays = build()
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=entry.name + ".tmp", dir=entry.parent))
        for n, a in arrays.items():
            np.save(tmp / f"{n}.npy", a, allow_pickle=False)
        (tmp / "key.json").write_text(json.dumps({"key": text, "arrays": list(arrays)}))
        if entry.exists():
            shutil.rmtree(entry, ignore_errors=True)
        os.replace(tmp, entry)
    except OSError as err:
        log.warning(
            "could not write the cache entry %s (%s); set MAGNETDML_CACHE or "
            "cache_dir= to a writable folder",
            entry,
            err,
        )
    return arrays, False
