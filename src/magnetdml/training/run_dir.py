"""The run folder: ``config.json``, ``metrics.jsonl``, ``checkpoint.pt``, ``metrics.json``, plots.

Every file that a crash could leave half-written is written to a temporary file in the same
folder and moved into place with ``os.replace`` (atomic on POSIX): an interrupted run never
loses its last good checkpoint, and a resumed run picks it up. A Ctrl-C during a checkpoint
write waits for the write to end. One process at a time trains in a folder (``.lock``, see
:mod:`.run_lock`), and ``--overwrite`` builds the new run in ``.NAME.new`` beside the old one,
which it replaces only with its first checkpoint: a run killed before then loses nothing.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from .._version import __version__
from .atomic_files import atomic_write, plain_json, write_json
from .run_identity import VERSION_KEY, extends, with_defaults, without_epochs
from .run_lock import RunLock, holder
from .run_swap import (
    deferred_interrupt,
    exchange,
    finish_swap,
    link_staging,
    remove_staging,
    staging_path,
)
from .safe_load import load_state

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
HISTORY = "metrics.jsonl"
SUMMARY = "metrics.json"


class RunDir:
    """A run folder. ``RunDir.open(path, config_dict)`` creates it, or reopens an unfinished
    run with the same config so that training resumes from its checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.final: Path | None = None  # set while an --overwrite builds beside the old run
        self._locks: list[RunLock] = []
        self._link: Path | None = None  # the staging name, pointing at the swapped-in run

    @classmethod
    def default_path(cls, dataset: str, loss: str) -> Path:
        return Path("runs") / f"{dataset}-{loss}-{time.strftime('%Y%m%d-%H%M%S')}"

    @classmethod
    def open(cls, path: str | Path, config: dict[str, Any], *, overwrite: bool = False) -> RunDir:
        """Lock the folder (one process trains in it) and prepare it; :meth:`close` frees it."""
        run = cls(Path(path))
        if run.path.exists() and not run.path.is_dir():
            raise ValueError(
                f"--out {str(run.path)!r} is a file, not a folder; choose another --out"
            )
        finish_swap(run.path)  # an --overwrite killed between its two renames
        run._locks.append(RunLock.acquire(run.path))
        try:
            run._prepare(config, overwrite)
        except BaseException:
            run.close()
            raise
        return run

    def _prepare(self, config: dict[str, Any], overwrite: bool) -> None:
        remove_staging(self.path)  # what a killed --overwrite left
        saved = self.path / CONFIG
        if saved.exists() and not overwrite:
            # both through the defaults: fields added since a run was written count at theirs
            previous, asked = with_defaults(json.loads(saved.read_text())), with_defaults(config)
            if (self.path / SUMMARY).exists():
                if not extends(previous, asked) or not (self.path / CHECKPOINT).exists():
                    raise ValueError(
                        f"run folder {str(self.path)!r} already holds a finished "
                        "run; choose another --out, pass --overwrite to replace "
                        "it, or a larger --train.epochs to train it on"
                    )
                (self.path / SUMMARY).unlink()  # trained on from its last epoch
            # without a checkpoint nothing was trained yet (e.g. a run that failed to start):
            # a corrected config may take the folder over, nothing is lost; the number of
            # epochs may change until the run ends (the schedule is per epoch)
            if (
                without_epochs(previous) != without_epochs(asked)
                and (self.path / CHECKPOINT).exists()
            ):
                raise ValueError(
                    f"run folder {str(self.path)!r} holds an unfinished run with a "
                    "different config; resume it with --config "
                    f"{saved}, or choose another --out"
                )
        elif overwrite and any(
            (self.path / name).exists() for name in (CHECKPOINT, HISTORY, SUMMARY)
        ):
            # the old run stays whole until the new one has a checkpoint (save_checkpoint)
            self.final, self.path = self.path, staging_path(self.path)
            self._locks.append(RunLock.acquire(self.path))
        if not (self.path / CHECKPOINT).exists():
            # nothing trained counts yet: an epoch logged by a run killed before its first
            # checkpoint would be logged twice
            (self.path / HISTORY).unlink(missing_ok=True)
        for stale in self.path.glob(".*.tmp"):  # atomic writes a kill -9 interrupted
            stale.unlink(missing_ok=True)
        write_json(self.path / CONFIG, {VERSION_KEY: __version__, **config})

    def close(self) -> None:
        """Free the folder for other processes (the end of a run, or its failure)."""
        if self._link is not None and self._link.is_symlink():
            self._link.unlink(missing_ok=True)
        self._link = None
        while self._locks:
            self._locks.pop().release()

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.exists()

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write the checkpoint atomically; a Ctrl-C meanwhile takes effect once it is
        written. The first checkpoint of an ``--overwrite`` replaces the old run."""
        with deferred_interrupt():
            atomic_write(self.checkpoint_path, lambda f: torch.save(state, f))
            if self.final is not None:
                self._swap()

    def _swap(self) -> None:
        """Put the new run (``.NAME.new``) in the old one's place, then delete the old one."""
        final, staging, old = self.final, self.path, staging_path(self.final, "old")
        shutil.rmtree(old, ignore_errors=True)
        if exchange(staging, final):
            os.replace(staging, old)  # the old run, now at the staging name
        else:
            os.replace(final, old)
            os.replace(staging, final)
        self.path, self.final = final, None
        self._link = link_staging(staging, final)
        for lock in [lock for lock in self._locks if lock.folder == final]:
            self._locks.remove(lock)  # the old run's lock: its folder goes
            lock.moved(old)
            lock.release()
        for lock in self._locks:
            lock.moved(final)
        shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        return load_checkpoint_file(self.checkpoint_path, map_location)

    def append_history(self, record: dict[str, Any]) -> None:
        with open(self.path / HISTORY, "a") as handle:
            handle.write(json.dumps(record, default=plain_json) + "\n")

    def read_history(self) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl``; a torn last line (a kill while appending) is
        dropped, as its epoch has no checkpoint yet; a bad line elsewhere is an error."""
        path = self.path / HISTORY
        if not path.exists():
            return []
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        records = []
        for number, line in enumerate(lines, start=1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if number == len(lines):
                    break
                raise ValueError(
                    f"{str(path)!r} line {number} is not JSON; the run's history "
                    "is damaged: delete the line (or the file) and resume"
                ) from None
        return records

    def truncate_history(self, epochs_done: int) -> None:
        """Drop records of epochs after the checkpoint (they are recomputed on resume)."""
        kept = [r for r in self.read_history() if r.get("epoch", 0) <= epochs_done]
        atomic_write(
            self.path / HISTORY,
            lambda f: f.write("".join(json.dumps(r) + "\n" for r in kept).encode()),
        )

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.path / SUMMARY, summary)


def load_checkpoint_file(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint at ``path``, or one line naming the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(
            f"checkpoint {str(path)!r} is empty (0 bytes): the run was killed "
            "while it was written, or the file was copied badly; it can be "
            "neither resumed nor evaluated: retrain the run (--overwrite)"
        )
    # tensors, numpy arrays and plain Python only: a crafted file must not run code
    try:
        return load_state(path, map_location=map_location)
    except (RuntimeError, EOFError, IndexError, pickle.UnpicklingError, OSError) as error:
        if isinstance(error, (FileNotFoundError, PermissionError)):
            raise
        reason = (str(error).splitlines() or [type(error).__name__])[0][:120]
        raise ValueError(
            f"checkpoint {str(path)!r} is truncated or corrupt ({reason}); it "
            "can be neither resumed nor evaluated: retrain the run (--overwrite)"
        ) from None


def missing_checkpoint(path: Path) -> str:
    """Why the run folder ``path`` (with its ``config.json``) has no checkpoint yet."""
    busy = holder(path)
    epochs = len(RunDir(path).read_history()) if (path / HISTORY).is_file() else 0
    state = (
        f"it is training now ({busy}): wait for its first epoch to end"
        if busy
        else "its training stopped before the first epoch ended (nothing was saved); start it "
        f"again with 'magnetdml train --config {path / CONFIG} --out {path}'"
    )
    logged = f" ({epochs} epoch(s) logged but not saved)" if epochs else ""
    return f"run folder {str(path)!r} has no {CHECKPOINT} yet{logged}: {state}"
