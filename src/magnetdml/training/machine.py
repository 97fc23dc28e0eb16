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
    return {"cpu": cpu, "cores": os.cpu_count(),
            "torch_threads": config.train.threads or torch.get_num_threads(),
            "device": config.train.device, "torch": torch.__version__}
