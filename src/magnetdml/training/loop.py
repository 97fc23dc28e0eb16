"""The training loop: read it top to bottom.

start (or resume) -> for each epoch: draw batches, step, refresh the index when due ->
anneal the learning rate -> refresh the index (every epoch by default) -> evaluate ->
log -> checkpoint atomically -> finally: summary, plots.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._progress import bar, honours_progress, phase
from ..models.inference import slow_bfloat16
from .config import Config
from .distributed import Distributed
from .logging_sinks import open_sink
from .machine import oversubscription, resolve_threads
from .report_plots import plot_run, save_initial, snapshot_for_plots
from .trainer import Trainer
from .warm_start import warm_start


@dataclass(frozen=True)
class TrainResult:
    """The run folder and the final summary written to its ``metrics.json``."""

    run_dir: Path
    summary: dict


@honours_progress  # progress=False (or magnetdml --quiet) silences every pass's bar too
def train(
    config: Config,
    *,
    overwrite: bool = False,
    progress: bool = True,
    on_epoch: Callable[[Trainer, dict], None] | None = None,
) -> TrainResult:
    """Train an embedding as ``config`` says and evaluate it; see the module docstring.

    ``on_epoch(trainer, record)`` is called after every epoch, before the epoch's line is
    written to ``metrics.jsonl``: add your own measurements to ``record`` (plain numbers)
    or log elsewhere; ``trainer.model``, ``trainer.embed(dataset)``, ``trainer.index`` and
    ``trainer.splits`` are there to use (leave them unchanged: a resumed run must be the run
    that was interrupted)."""
    config = config.validate()
    dist = Distributed.setup(config.train.device)
    threads = resolve_threads(config.train.threads)
    torch.set_num_threads(threads)
    if dist.is_main and (warning := oversubscription(threads, processes=dist.world_size)):
        print(warning, file=sys.stderr)
    if dist.is_main and (warning := slow_bfloat16(config.index.refresh_precision, dist.device)):
        print(warning, file=sys.stderr)
    t = Trainer(config, dist, overwrite=overwrite)
    try:
        return _train(t, progress=progress, on_epoch=on_epoch)
    finally:
        t.close()


def _train(t: Trainer, *, progress: bool, on_epoch) -> TrainResult:
    config, dist = t.config, t.dist
    resumed = t.start_from_checkpoint()
    sink = open_sink(config.train.log, t)  # metrics.csv or TensorBoard, beside metrics.jsonl

    def say(message: str) -> None:
        phase(message, progress=progress and dist.is_main)

    if not resumed:
        warm_start(t, config.train.warm_start_epochs, progress=progress)
        if t.uses_index:  # a silent pass otherwise (a minute on Fashion-MNIST's CPU)
            say(f"building the first cluster index of {len(t.labels):,} training examples")
        t.build_initial_index()
        # every rank: the snapshot's embedding passes are sharded collectives
        initial = snapshot_for_plots(t) if config.eval.plots else None
        save_initial(t, initial)
    steps = bar(
        total=config.train.epochs * len(t.sampler),
        initial=t.iteration,
        desc="training",
        progress=progress and dist.is_main,
        leave=True,  # its last state stays: steps, time, rate
        delay=0,
    )
    for epoch in range(t.epoch + 1, config.train.epochs + 1):
        if t.patience_exhausted():  # converged (train.patience): no more epochs
            break
        started, losses = time.perf_counter(), []
        for batch in t.sampler:
            losses.append(t.step(batch))
            t.apply_pending_refresh()  # a background refresh (index.refresh_lag) now due
            if t.refresh_due():
                t.refresh_index()
            steps.update(1)
            # drawn with the next update, not now: a redraw per step fills a log file
            steps.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}", refresh=False)
        t.scheduler.step()
        refresh_now = t.uses_index and t.upkeep.schedule.at_epoch_end
        if refresh_now and epoch < config.train.epochs:
            t.refresh_index()
        # Training time includes every refresh that later steps train on: the index is part
        # of the cost. The one after the last epoch only builds the final index for kNC
        # evaluation (like the other losses' final embedding pass), so it is not training.
        t.timing["train_seconds"] += time.perf_counter() - started
        if refresh_now and epoch == config.train.epochs:
            t.refresh_index(final=True)
        t.epoch = epoch
        record = t.epoch_record(float(np.mean(losses)) if losses else float("nan"))
        if config.eval.every and (epoch % config.eval.every == 0 or epoch == config.train.epochs):
            record.update(t.evaluate())
        if config.train.patience:
            t.track_validation(record)
        if on_epoch is not None:
            on_epoch(t, record)
        t.log(record)
        sink.log(record, t)
        t.save_checkpoint()
    steps.close()
    if t.restore_best():  # the checkpoint is the model scored (magnetdml evaluate loads it)
        t.save_checkpoint()
    summary = t.finish(write=False)
    sink.close(t, summary)
    if dist.is_main:
        say(
            (
                f"kNC test error {100 * summary['knc_error']:.2f}%, kNN "
                f"{100 * summary['knn_error']:.2f}%"
                if config.eval.final
                else "finished"
            )
            + ("; drawing the pictures (loss curve, t-SNE)" if config.eval.plots else "")
        )
        if config.eval.plots:  # first: a kill while plotting leaves a run that resumes
            plot_run(t.run.path, t)
        t.run.write_summary(summary)  # metrics.json marks the run finished: written last
    dist.close()
    return TrainResult(Path(t.config.out), summary)
