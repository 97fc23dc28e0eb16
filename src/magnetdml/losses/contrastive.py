"""Contrastive (pair) loss (Hadsell, Chopra & LeCun, CVPR 2006, eq. 4) over every pair of a
batch."""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_choice, check_float
from .miners import check_bool, float32_batch, pairwise_distances
from .reduction import REDUCTIONS, reduce_losses


class ContrastiveLoss(nn.Module):
    """Contrastive loss over all ``B (B - 1) / 2`` unordered pairs of a batch.

    ``loss = ContrastiveLoss(margin=1.0)(embeddings (B, E), labels (B,))``. With Euclidean
    distance ``d = ||r_i - r_j||``::

        same class:       l_ij = 1/2 max(0, d - positive_margin)^2    (pulled together)
        different class:  l_ij = 1/2 max(0, margin - d)^2             (pushed beyond margin)

    ``positive_margin=0`` is Hadsell et al.'s original (positives pulled to 0); a positive
    margin stops pulling pairs that are already close, which leaves classes room to spread.

    Args:
        margin: distance beyond which negative pairs cost nothing (> positive_margin).
        positive_margin: distance below which positive pairs cost nothing (>= 0).
        normalize: L2-normalise the embeddings inside the loss (distances then lie in [0, 2]).
        reduction: ``"mean"`` over all pairs (the textbook average: with P classes of K
            examples the negative pairs outnumber the positive ones about ``(P - 1) / (K - 1)``
            to 1), ``"sum"``, or ``"none"``: the ``(B (B - 1) / 2,)`` per-pair losses in
            ``torch.triu_indices(B, B, 1)`` order.

    A batch of a single class raises ``ValueError`` (no negative pair: the loss would only
    collapse the embedding). Computed in float32 (float64 for float64 input), autocast off.
    """

    def __init__(
        self,
        margin: float = 1.0,
        positive_margin: float = 0.0,
        normalize: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.positive_margin = check_float("positive_margin", positive_margin, minimum=0.0)
        self.margin = check_float(
            "margin",
            margin,
            strict_minimum=self.positive_margin,
            fix="negatives must be pushed farther than positives are pulled; raise margin or "
            "lower positive_margin",
        )
        self.normalize = check_bool("normalize", normalize)
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with float32_batch(embeddings, labels, self.normalize) as x:  # (B, E)
            i, j = torch.triu_indices(x.shape[0], x.shape[0], 1, device=x.device)
            d = pairwise_distances(x, squared=False)[i, j]  # (P,)
            same = labels[i] == labels[j]  # (P,)
            losses = 0.5 * torch.where(
                same, torch.relu(d - self.positive_margin), torch.relu(self.margin - d)
            ).pow(2)
        return reduce_losses(losses, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, positive_margin={self.positive_margin}, "
            f"normalize={self.normalize}, reduction={self.reduction!r}"
        )
