"""Lifted structured embedding loss (Song, Xiang, Jegelka & Savarese, CVPR 2016, eq. 4)."""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_choice, check_float
from .miners import check_bool, float32_batch, pairwise_distances
from .reduction import REDUCTIONS, reduce_losses


class LiftedStructureLoss(nn.Module):
    """Lifted structured loss with the smooth log-sum-exp bound (Song et al. 2016, eq. 4).

    ``loss = LiftedStructureLoss(margin=1.0)(embeddings (B, E), labels (B,))``. With
    Euclidean distances ``D_ij = ||r_i - r_j||`` and ``N_i`` the other-class examples of ``i``,
    for every unordered positive pair ``(i, j)`` (same class, ``i != j``)::

        J_ij = log( sum_{k in N_i} exp(margin - D_ik) + sum_{l in N_j} exp(margin - D_jl) )
               + D_ij
        L    = 1 / (2 |P|)  sum_{(i, j) in P}  max(0, J_ij)^2

    computed as ``J_ij = logaddexp(lse_i, lse_j) + D_ij`` with ``lse_i`` the per-example
    log-sum-exp over its negatives, so no exponential overflows and the cost is ``O(B^2)``.

    Args:
        margin: the margin ``alpha`` of eq. 4 (Song et al. use 1.0).
        normalize: L2-normalise the embeddings inside the loss.
        reduction: ``"mean"`` gives ``L`` above (the mean of ``max(0, J_ij)^2 / 2`` over
            positive pairs), ``"sum"`` their sum, ``"none"`` the ``(|P|,)`` per-pair terms, in
            the order ``(i, j)`` with ``i < j`` ascending.

    A batch with no positive pair (every class has one example) gives a zero loss that still
    has a ``grad_fn``; a batch of a single class raises ``ValueError``. Computed in float32
    (float64 for float64 input) with autocast disabled.
    """

    def __init__(
        self, margin: float = 1.0, normalize: bool = False, reduction: str = "mean"
    ) -> None:
        super().__init__()
        self.margin = check_float("margin", margin)
        self.normalize = check_bool("normalize", normalize)
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with float32_batch(embeddings, labels, self.normalize) as x:  # (B, E)
            distances = pairwise_distances(x, squared=False)  # (B, B)
            same = labels.unsqueeze(0) == labels.unsqueeze(1)  # (B, B)
            lse = torch.logsumexp(
                (self.margin - distances).masked_fill(same, float("-inf")), dim=1
            )  # (B,)
            i, j = torch.triu_indices(x.shape[0], x.shape[0], 1, device=x.device)
            positive = same[i, j]
            i, j = i[positive], j[positive]  # (|P|,)
            bound = torch.logaddexp(lse[i], lse[j]) + distances[i, j]  # (|P|,)
            losses = 0.5 * torch.relu(bound).pow(2)
        if losses.numel() == 0 and self.reduction != "none":
            return distances.sum() * 0.0  # no positive pair: zero loss, still in the graph
        return reduce_losses(losses, self.reduction)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, normalize={self.normalize}, reduction={self.reduction!r}"
