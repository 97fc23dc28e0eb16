"""The network and its loss as one module: what a training step forwards (and DDP wraps)."""

from __future__ import annotations

import torch
from torch import nn


class Objective(nn.Module):
    """Network and loss as one module, so that DDP also averages the gradients of the loss's
    own parameters (the softmax baseline's classifier). Only the network runs under autocast
    (``amp``); the cluster losses compute in float32 themselves (log-sum-exp in float16
    underflows)."""

    def __init__(
        self, model: nn.Module, loss_fn: nn.Module, *, amp: bool, device_type: str
    ) -> None:
        super().__init__()
        self.model, self.loss_fn = model, loss_fn
        self.amp, self.device_type = amp, device_type

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, clusters: torch.Tensor | None = None
    ) -> torch.Tensor:
        with torch.autocast(
            self.device_type,
            enabled=self.amp,
            dtype=torch.bfloat16 if self.device_type == "cpu" else torch.float16,
        ):
            embeddings = self.model(x)  # (B, E)
        if clusters is None:
            return self.loss_fn(embeddings, y)  # ()
        return self.loss_fn(embeddings, y, clusters)  # (B,)
