"""Experiment logging beside ``metrics.jsonl``: ``--train.log csv | tensorboard | none``.

The loop hands each epoch's record (the line it writes to ``metrics.jsonl``) to
:meth:`LogSink.log` and the final summary to :meth:`LogSink.close`. Only the main process
logs (``trainer.run`` is ``None`` on the others).

``csv`` (the default: no extra dependency, opens in any spreadsheet or ``pandas.read_csv``)
writes ``metrics.csv`` into the run folder: one row per logged step (an epoch), one column per
number of the record with nested keys joined by dots (``clusters_per_class.mean``), plus
``refresh_seconds`` (the index refreshes' time so far). A column that appears later (e.g. test
errors with ``eval.every > 1``) rewrites the file with the wider header; a resumed run drops
the rows after its checkpoint, as ``metrics.jsonl`` does.

``tensorboard`` (needs the ``tensorboard`` package: ``pip install 'magnetdml[tensorboard]'``)
writes event files through ``torch.utils.tensorboard`` into ``RUN/tensorboard/``: per epoch
``train/loss``, ``train/lr``, ``train/sigma2``, ``index/refresh_seconds`` (that epoch's) and
every error of the record as ``test/...`` or ``val/...``; per iteration ``train/batch_loss``;
at the end the final scores as ``final/...`` and an embedding projector snapshot of (at most
:data:`PROJECTOR_POINTS`) test embeddings labelled by class. Look at them with
``tensorboard --logdir runs/``. A resumed run purges the events after its checkpoint.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from .atomic_files import atomic_write

LOGS = ("csv", "tensorboard", "none")
CSV_FILE = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
PROJECTOR_POINTS = 2000  # the projector's own t-SNE/UMAP slows down well before 10k points


def flatten(record: dict, prefix: str = "") -> dict[str, float]:
    """The numbers of ``record``, nested keys joined by dots (``{"a": {"b": 1}} -> a.b``)."""
    flat: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            flat[name] = float(value) if isinstance(value, (float, np.floating)) else int(value)
    return flat


class LogSink:
    """Logs nothing (``--train.log none``); the base of the real sinks."""

    def log(self, record: dict, trainer) -> None:
        """Log one epoch's record (after it was written to ``metrics.jsonl``)."""

    def close(self, trainer, summary: dict) -> None:
        """Log the final summary and release the files."""


class CsvSink(LogSink):
    """``metrics.csv``: one row per logged epoch, read back with the ``csv`` module."""

    def __init__(self, run_path: Path, epochs_done: int) -> None:
        self.path = Path(run_path) / CSV_FILE
        self.rows: list[dict[str, str]] = []
        if self.path.is_file() and epochs_done:  # a resumed run keeps its rows so far
            with open(self.path, newline="") as handle:
                self.rows = [row for row in csv.DictReader(handle) if _epoch(row) <= epochs_done]
        self.columns: list[str] = list(self.rows[0]) if self.rows else []
        self.rewrite = True  # the first row rewrites the file (a resume drops stale rows)

    def log(self, record: dict, trainer) -> None:
        row = {**flatten(record), "refresh_seconds": round(_refresh_seconds(trainer), 3)}
        added = [key for key in row if key not in self.columns]
        self.columns += added
        self.rows.append({key: _text(value) for key, value in row.items()})
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self.columns, restval="")
        if self.rewrite or added:  # a wider header: every row again, atomically
            writer.writeheader()
            writer.writerows(self.rows)
            atomic_write(self.path, lambda f: f.write(text.getvalue().encode()))
            self.rewrite = False
        else:  # the usual case: one more line
            writer.writerow(self.rows[-1])
            with open(self.path, "a", newline="") as handle:
                handle.write(text.getvalue())


class TensorBoardSink(LogSink):
    """Event files in ``RUN/tensorboard/`` (see the module docstring for the tags)."""

    def __init__(self, run_path: Path, iterations_done: int, refresh_seconds: float) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ImportError(
                "train.log 'tensorboard' needs the tensorboard package: pip "
                "install 'magnetdml[tensorboard]' (or use --train.log csv)"
            ) from None
        # purge_step: events a killed run logged after its checkpoint are hidden on resume
        self.writer = SummaryWriter(
            str(Path(run_path) / TENSORBOARD_DIR),
            flush_secs=10,
            purge_step=iterations_done + 1 if iterations_done else None,
        )
        self.logged_iteration = iterations_done
        self.refresh_seconds = refresh_seconds  # so far (restored with the checkpoint)

    def log(self, record: dict, trainer) -> None:
        step = record["iteration"]
        for iteration, value in trainer.loss_curve:
            if iteration > self.logged_iteration:
                self.writer.add_scalar("train/batch_loss", value, iteration)
        self.logged_iteration = step
        for key, value in flatten(record).items():
            if key not in ("epoch", "iteration") and math.isfinite(value):
                self.writer.add_scalar(_tag(key), value, step)
        total = _refresh_seconds(trainer)  # the first epoch's: the first index too
        self.writer.add_scalar("index/refresh_seconds", total - self.refresh_seconds, step)
        self.refresh_seconds = total
        self.writer.add_scalar("train/epoch", record["epoch"], step)
        self.writer.flush()

    def close(self, trainer, summary: dict) -> None:
        step = trainer.iteration
        for key, value in flatten(summary).items():
            if key.endswith("_error") or key.startswith("unseen."):
                self.writer.add_scalar(f"final/{key}", value, step)
        embeddings = trainer.evaluation.final_test_embeddings  # the final model's
        if embeddings is not None and len(embeddings):
            labels = np.asarray(trainer.splits.test.labels)
            keep = np.random.default_rng(0).permutation(len(embeddings))[:PROJECTOR_POINTS]
            keep.sort()
            self.writer.add_embedding(
                np.asarray(embeddings)[keep],
                metadata=[int(label) for label in labels[keep]],
                global_step=step,
                tag="test_embeddings",
            )
        self.writer.close()


def open_sink(kind: str, trainer) -> LogSink:
    """The sink ``kind`` (a name of :data:`LOGS`) for ``trainer``'s run folder; a plain
    :class:`LogSink` on processes that write no run folder."""
    if kind not in LOGS:
        raise ValueError(f"train.log must be one of {', '.join(LOGS)}; got {kind!r}")
    if trainer.run is None or kind == "none":
        return LogSink()
    if kind == "csv":
        return CsvSink(trainer.run.path, trainer.epoch)
    return TensorBoardSink(trainer.run.path, trainer.iteration, _refresh_seconds(trainer))


def _refresh_seconds(trainer) -> float:
    """The index refreshes' seconds so far (the first index included)."""
    return float(trainer.timing_summary()["refresh_seconds"])


def _tag(key: str) -> str:
    """TensorBoard groups tags by their first ``/``: train, index, sampler, test, val."""
    if key.startswith("val_"):
        return f"val/{key[4:]}"
    if key.endswith("_error") or key.startswith("recall") or key in ("nmi", "f1", "map_at_r"):
        return f"test/{key}"
    if key in ("loss", "lr", "sigma2", "train_seconds"):
        return f"train/{key}"
    if key in ("refreshes", "drift") or key.startswith("clusters_per_class."):
        return f"index/{key}"
    return key.replace(".", "/")


def _epoch(row: dict[str, str]) -> float:
    try:
        return float(row.get("epoch") or 0)
    except ValueError:
        return 0.0


def _text(value: float) -> str:
    return repr(value) if isinstance(value, float) else str(value)
