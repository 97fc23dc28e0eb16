"""PyTorch's own distributed engine (torchrun + DistributedDataParallel), or one process.

Under ``torchrun`` the environment holds ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; we join the
process group (gloo on CPU, NCCL on CUDA) and every collective below works on numpy arrays or
tensors. Without it, ``world_size == 1`` and every collective is the identity.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job: ``rank`` of ``world_size``, and its ``device``."""

    rank: int
    world_size: int
    device: torch.device
    owns_group: bool = False  # True when setup() created the process group (close ends it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls, device: str = "cpu") -> Distributed:
        """Join the torchrun process group if there is one; pick this rank's device."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(
                f"train.device is {device!r} but torch sees no CUDA device; "
                "use --train.device cpu (or auto)"
            )
        if world_size == 1:
            return cls(0, 1, torch.device(device))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.startswith("cuda"):
            torch.cuda.set_device(local_rank)
            torch_device = torch.device("cuda", local_rank)
        else:
            torch_device = torch.device("cpu")
        # A group the caller already created (e.g. a script that trains twice) stays theirs:
        # tearing it down and re-creating it on the same port raced and hung in tests.
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group("nccl" if torch_device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), torch_device, owns)

    def shard(self, n: int) -> np.ndarray:
        """The example indices this rank handles in a sharded pass over ``n`` examples
        (contiguous blocks, so gathering them in rank order restores the original order)."""
        bounds = np.linspace(0, n, self.world_size + 1).astype(np.int64)
        return np.arange(bounds[self.rank], bounds[self.rank + 1])

    def gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's ``(n_r, ...)`` tensor in rank order (sizes may differ)."""
        if self.world_size == 1:
            return rows
        sizes = [
            torch.zeros(1, dtype=torch.int64, device=rows.device) for _ in range(self.world_size)
        ]
        dist.all_gather(sizes, torch.tensor([rows.shape[0]], device=rows.device))
        largest = int(max(s.item() for s in sizes))
        padded = torch.zeros((largest, *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
        padded[: rows.shape[0]] = rows
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes, strict=True)])

    def broadcast_object(self, value):
        """Rank 0's ``value`` on every rank (used to share the fitted cluster index)."""
        if self.world_size == 1:
            return value
        holder = [value if self.is_main else None]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def all_gather_object(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank (per-rank RNG states)."""
        if self.world_size == 1:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def on_main(self, fn: Callable[[], T]) -> T | None:
        """``fn()`` on rank 0 only (its result there, ``None`` elsewhere). An exception raised
        on rank 0 is raised on every rank, so no rank is left waiting in a collective."""
        if self.world_size == 1:
            return fn()
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except Exception as raised:  # re-raised below, on every rank
                error = raised
        error = self.broadcast_object(error)
        if error is not None:
            raise error
        return result

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics) to every rank. DDP syncs them
        only at the start of a training forward, so after a step each rank holds the
        statistics of its own batch; an eval-mode pass sharded across ranks needs one set."""
        if self.world_size == 1:
            return
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)

    def all_reduce_mean(self, value: float) -> float:
        if self.world_size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        """End the process group if ``setup`` created it, once every rank has got here: a rank
        that tears its connections down while another is still finishing its last collective
        leaves that rank reading from a closed peer. Call it on the normal path only (after an
        error on one rank, the others would wait here for it)."""
        if self.owns_group and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def check_one_process_settings(config, world_size: int) -> None:
    """Refuse, under torchrun, the settings that work in one process only."""
    if config.index.refresh_lag and world_size > 1:
        raise ValueError(
            "index.refresh_lag > 0 (a refresh on a background thread) runs in "
            f"one process only; got {world_size} processes: use "
            "--index.refresh_lag 0 under torchrun"
        )
    if config.train.warm_start_cache and world_size > 1:
        raise ValueError(
            "train.warm_start_cache (reusing a stored warm start) works in one "
            f"process only; got {world_size} processes: leave "
            "--train.warm_start_cache empty under torchrun"
        )
