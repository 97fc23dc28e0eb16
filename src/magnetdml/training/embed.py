"""One pass of the network over a whole dataset, in eval mode with no gradients.

The cluster index must be built from embeddings all computed at the same stage of training
(paper §3.2: caching embeddings from different steps damages the neighbourhood structure), so
the refresh pauses training and embeds every training example with this function.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..models.inference import InferenceForward
from .distributed import Distributed

CPU_BATCH, ACCELERATOR_BATCH = 128, 1024


def embed_dataset(model: nn.Module, dataset, *, device: torch.device,
                  batch_size: int | None = None,
                  dist: Distributed | None = None,
                  augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  copies: int = 0) -> np.ndarray:
    """Embeddings ``(N, E)`` float32 of every example of ``dataset``, in dataset order.

    With ``dist``, each rank embeds its contiguous shard and the shards are gathered, so every
    rank returns the same full array. With ``augment`` and ``copies = n > 0``, each embedding is
    the mean of the embeddings of ``n`` augmented copies (paper §4 test-time averaging).

    ``batch_size`` defaults to 128 on CPU (on one thread the small CNN embeds as fast in
    batches of 128 as of 256 and ~1.3x faster than of 1024, cifar-cnn 1.1-1.3x faster than of
    256: cache) and 1024 on accelerators. This pass is the main cost of an index refresh
    (``benchmarks/training_overhead.py``); it runs through
    :class:`~magnetdml.models.inference.InferenceForward` (BatchNorm folded into the convs, and
    oneDNN's layout on the CPU: ~2x faster on one thread, same embeddings up to float rounding).
    """
    if batch_size is None:
        batch_size = CPU_BATCH if torch.device(device).type == "cpu" else ACCELERATOR_BATCH
    was_training = model.training
    model.eval()
    forward = InferenceForward(model)   # a folded copy when it has BatchNorms: same weights
    indices = dist.shard(len(dataset)) if dist else np.arange(len(dataset))
    parts = []
    with torch.inference_mode():
        for start in range(0, len(indices), batch_size):
            x, _ = dataset.get_batch(indices[start:start + batch_size])
            x = x.to(device, non_blocking=True)
            if augment is not None and copies > 0:
                out = sum(forward(augment(x)).float() for _ in range(copies)) / copies
            else:
                out = forward(x).float()
            parts.append(out)
    model.train(was_training)
    dim = parts[0].shape[1] if parts else _output_dim(model)
    rows = torch.cat(parts) if parts else torch.zeros(0, dim, device=device)
    if dist is not None:
        rows = dist.gather_rows(rows)
    return rows.cpu().numpy()


def _output_dim(model: nn.Module) -> int:
    return int(getattr(model, "embedding_dim", 0))
