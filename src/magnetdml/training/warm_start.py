"""Paper §4: warm-start every loss from a softmax network trained only briefly.

A softmax head (cross-entropy through a linear layer on the embedding) is trained together
with the network for a few epochs of shuffled batches. The network's weights are the starting
point of the metric-learning run; the head is discarded, except by the softmax baseline, which
trains on with it (a fresh random head would restart its loss at chance, ``ln C``).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .._progress import bar, phase
from ..losses import SoftmaxLoss, build_loss
from .warm_start_cache import WarmStartCache

BATCH_SIZE = 128


class _WithHead(nn.Module):
    def __init__(self, model: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.model, self.head = model, head

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # the head's output before any L2 normalisation: a softmax on unit vectors would
        # need ever larger weights, and the runs that normalise (triplet) warm-start as the
        # others do
        return self.head(self.model.head(self.model.features(x)), y)


def warm_start(trainer, epochs: int, progress: bool = False) -> None:
    """Train ``trainer.model`` with a softmax head for ``epochs`` epochs (0: do nothing), or
    load the identical result from ``train.warm_start_cache`` when a run stored it there.
    Records ``warm_start_seconds`` and ``warm_start_loaded`` in ``trainer.timing``."""
    if epochs <= 0:
        return
    started = time.perf_counter()
    folder = trainer.config.train.warm_start_cache
    cache = WarmStartCache(folder, trainer, epochs, BATCH_SIZE) if folder else None
    loaded = cache is not None and cache.restore()
    shown = progress and trainer.dist.is_main
    phase(
        f"softmax warm start: {'loaded from ' + folder if loaded else f'{epochs} epoch(s)'}",
        progress=shown,
    )
    if not loaded:
        _train(trainer, epochs, progress)
        if cache is not None:
            cache.store()
    trainer.timing["warm_start_seconds"] = time.perf_counter() - started
    trainer.timing["warm_start_loaded"] = loaded


def _train(trainer, epochs: int, progress: bool = False) -> None:
    config, dist = trainer.config, trainer.dist
    head = trainer.loss_fn
    if not isinstance(head, SoftmaxLoss):
        head = build_loss(
            "softmax",
            embedding_dim=config.model.embedding_dim,
            num_classes=trainer.splits.num_classes,
        ).to(dist.device)
    net = _WithHead(trainer.model, head)
    if dist.world_size > 1:
        net = DistributedDataParallel(net)
    optimizer = torch.optim.SGD(
        net.parameters(), lr=config.train.warm_start_rate(), momentum=config.train.momentum
    )
    rng = np.random.default_rng(config.train.seed)
    dataset = trainer.splits.train
    steps = epochs * (len(range(dist.rank, len(dataset), dist.world_size)) // BATCH_SIZE)
    shown = bar(
        total=steps,
        desc="softmax warm start",
        unit="it",
        delay=0,
        progress=progress and dist.is_main,
    )
    for _ in range(epochs):
        order = rng.permutation(len(dataset))
        order = order[dist.rank :: dist.world_size]  # each rank its own share of the epoch
        for start in range(0, len(order) - BATCH_SIZE + 1, BATCH_SIZE):
            x, y = dataset.get_batch(order[start : start + BATCH_SIZE])
            x, y = x.to(dist.device), y.to(dist.device)
            if trainer.train_augmenter is not None:
                x = trainer.train_augmenter(x)
            loss = net(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            shown.update(1)
    shown.close()
