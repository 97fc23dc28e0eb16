"""The ``reduction`` argument every loss takes, as in ``torch.nn`` losses."""

from __future__ import annotations

import torch

REDUCTIONS = ("mean", "none", "sum")


def reduce_losses(losses: torch.Tensor, reduction: str) -> torch.Tensor:
    """Per-item ``losses (B,)`` as they are (``"none"``), or their mean or sum (a scalar)."""
    if reduction == "none":
        return losses
    return losses.mean() if reduction == "mean" else losses.sum()
