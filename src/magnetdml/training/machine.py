"""Where a number was measured: recorded with every results file (CPU, cores, threads, torch)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from .config import Config


def hardware(config: Config) -> dict:
    """CPU model, core count, torch threads, device and torch version of this run."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": config.train.threads or torch.get_num_threads(),
        "device": config.train.device,
        "torch": torch.__version__,
    }


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity; ``os.cpu_count()`` elsewhere)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_threads(cores: int, processes: int = 1) -> int:
    """``train.threads 0``: ``cores - 1`` torch threads (at least 1) for one process, and
    ``cores // processes`` for each of several (torchrun's ``LOCAL_WORLD_SIZE``).

    Not torch's own default of one thread per core: OpenMP threads wait for each other at every
    operation, so one busy core stalls the whole team. On this project's shared 2-core machine
    (``benchmarks/thread_default.py`` → ``thread_default.json``) two threads were slower than
    one as soon as another job ran. The core left free also runs the refresh's second
    embedding thread (``embed.cpu_workers``) and the rest of the machine.
    """
    if processes > 1:
        return max(1, cores // processes)
    return max(1, cores - 1)


def resolve_threads(threads: int) -> int:
    """``threads``, or :func:`default_threads` for 0."""
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return threads or default_threads(available_cores(), processes)


def oversubscription(
    threads: int, *, cores: int | None = None, load: float | None = None, processes: int = 1
) -> str | None:
    """One line of warning when ``threads`` per process (``processes`` of them) oversubscribe
    the cores: more threads than cores, or more than the cores the machine's 1-minute load
    average leaves idle. None when one thread per process (nothing to lower) or no excess."""
    if threads <= 1:
        return None
    cores = available_cores() if cores is None else cores
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    wanted = threads * processes
    idle = max(0.0, cores - load)
    if wanted <= cores and wanted <= idle + 0.5:
        return None
    safe = max(1, int(idle) // processes) if wanted <= cores else max(1, cores // processes)
    each = f" x {processes} processes" if processes > 1 else ""
    return (
        f"warning: train.threads {threads}{each} oversubscribes this machine ({cores} "
        f"cores, load average {load:.1f}): OpenMP "
        f"threads then wait for each other and steps can take several times longer; "
        f"--train.threads {safe} avoids it"
    )
