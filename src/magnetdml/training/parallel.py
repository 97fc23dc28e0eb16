"""Train several independent runs at once, each in its own worker process.

Runs are seeded and write only their own run folders, so training ``jobs`` of them side by
side gives the same results as one after another, in about ``1 / jobs`` of the time on a
machine with that many cores. On CPUs, ``jobs`` one-thread processes scale better than one
process with ``jobs`` threads: the small networks here keep an OpenMP team busy waiting.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from .._validation import check_int
from .config import Config
from .config_io import apply_overrides
from .loop import train


def train_all(
    configs: Sequence[Config],
    *,
    jobs: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> None:
    """Train every config (each into its ``out`` folder): one after another in this process
    when ``jobs == 1`` or there is one config, else in ``jobs`` spawned worker processes, each
    with ``cores // jobs`` torch threads unless the config sets ``train.threads``. The first
    failure cancels the runs not yet started and is re-raised here."""
    jobs = check_int("jobs", jobs, minimum=1, fix="the number of runs trained at once")
    log = log or (lambda _message: None)
    if jobs == 1 or len(configs) <= 1:
        for number, config in enumerate(configs, start=1):
            log(f"training {config.out} ({number} of {len(configs)})")
            train(config, overwrite=overwrite, progress=progress)
            log(f"finished {config.out}")
        return
    calls = [(with_threads(config, jobs), overwrite) for config in configs]
    for position, _ in in_workers(_train_one, calls, jobs=jobs):
        log(f"finished {configs[position].out}")


def in_workers(
    function: Callable, calls: Sequence[tuple], *, jobs: int
) -> Iterator[tuple[int, Any]]:
    """Run ``function(*call)`` for every call in ``jobs`` spawned worker processes; yield
    ``(position of the call, result)`` as each finishes. ``function`` must be importable
    (module level). The first exception cancels the calls not yet started and propagates."""
    # spawn, not fork: torch's and faiss's thread pools do not survive a fork
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_die_with_parent, initargs=(os.getpid(),)
    ) as pool:
        futures = {pool.submit(function, *call): position for position, call in enumerate(calls)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _die_with_parent(parent: int) -> None:
    """In a worker: end it when its parent is gone (a ``kill -9`` of ``search --jobs 2``
    cannot stop its pool, and a worker training a run would go on for hours). A thread
    checks every second whether the worker was handed to another parent (init or a
    subreaper); Linux's ``PR_SET_PDEATHSIG`` is not used: it fires when the *thread* that
    started the worker ends, which in a pool may be long before the parent does."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="magnetdml-parent-watch", daemon=True).start()


def _train_one(config: Config, overwrite: bool) -> None:
    """One run in a worker process (module level, so it pickles)."""
    train(config, overwrite=overwrite, progress=False)


def with_threads(config: Config, jobs: int) -> Config:
    """``jobs`` processes share the cores: unless the user chose ``train.threads``, each gets
    ``cores // jobs`` (torch's default of one thread per core would oversubscribe them)."""
    if config.train.threads != 0:
        return config
    return apply_overrides(config, {"train.threads": max(1, (os.cpu_count() or 1) // jobs)})
