"""Softmax classifier baseline: cross-entropy through a linear layer on the embedding
(Rippel et al. 2016, §4: the embedding, not the logits, is what gets evaluated)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_choice, check_int
from .miners import check_batch, compute_dtype
from .reduction import REDUCTIONS, reduce_losses


class SoftmaxLoss(nn.Module):
    """Cross-entropy of a linear classifier ``W r + b`` on the embedding ``r``.

    ``loss = SoftmaxLoss(embedding_dim, num_classes)(embeddings (B, E), labels (B,))``::

        l_n = -log softmax(W r_n + b)[C(n)],   W: (num_classes, E), b: (num_classes,)

    The module owns the ``nn.Linear`` classifier, so **its parameters must be given to the
    optimiser** together with the network's (``loss_fn.parameters()``). Evaluation uses the
    embedding ``r`` (kNN / kNC / clustering), never the logits.

    Args:
        embedding_dim: ``E``, the embedding size.
        num_classes: number of training classes; labels must lie in ``[0, num_classes)``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B,)`` per-example losses).

    The logits and the cross-entropy are computed in float32 (float64 for float64 input) with
    autocast disabled. A batch of a single class is fine for this loss. It trains on
    uniformly shuffled batches (its spec in ``LOSSES``), its standard protocol: P x K
    class-balanced batches show the classifier only P of its classes per step, and with many
    classes its loss then stays near chance.
    """

    def __init__(self, embedding_dim: int, num_classes: int, reduction: str = "mean") -> None:
        super().__init__()
        self.embedding_dim = check_int("embedding_dim", embedding_dim, minimum=1)
        self.num_classes = check_int(
            "num_classes", num_classes, minimum=2, fix="a classifier needs two classes"
        )
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        self.classifier = nn.Linear(self.embedding_dim, self.num_classes)

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``(B, num_classes)`` class scores, in the compute dtype."""
        dtype = compute_dtype(embeddings)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return F.linear(
                embeddings.to(dtype),
                self.classifier.weight.to(dtype),
                self.classifier.bias.to(dtype),
            )

    def class_scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``(B, num_classes)`` class scores (the logits): the loss's own classifier, which
        evaluation reports as ``classifier_error`` besides the embedding's kNN and kNC."""
        return self.logits(embeddings)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_batch(embeddings, labels, min_classes=1)
        if embeddings.shape[1] != self.embedding_dim:
            raise ValueError(
                f"embeddings must have {self.embedding_dim} columns (the "
                f"embedding_dim this loss was built with); got "
                f"{embeddings.shape[1]}. Build the loss with "
                f"embedding_dim={embeddings.shape[1]}"
            )
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= self.num_classes:
            raise ValueError(
                f"labels must lie in [0, num_classes={self.num_classes}); got "
                f"values in [{low}, {high}]. Remap labels to 0..C-1 or build "
                "the loss with the right num_classes"
            )
        losses = F.cross_entropy(self.logits(embeddings), labels.long(), reduction="none")
        return reduce_losses(losses, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
