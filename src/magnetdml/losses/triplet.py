"""Triplet loss (Weinberger & Saul 2009; Rippel et al. 2016, §2 eq. 1), hinge or ratio form,
over triplets mined inside the batch (see :mod:`magnetdml.losses.miners`)."""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_choice, check_float
from .miners import (
    MINERS,
    Triplets,
    check_bool,
    check_impostor_fraction,
    float32_batch,
    mine,
    pairwise_distances,
)
from .reduction import REDUCTIONS, reduce_losses

VARIANTS = ("hinge", "ratio")


class TripletLoss(nn.Module):
    """Triplet loss over the triplets a miner finds in a class-balanced batch.

    ``loss = TripletLoss(margin=0.2)(embeddings (B, E), labels (B,))``.

    ``variant="hinge"`` is paper eq. 1 with squared distances::

        l(a, p, n) = max(0, ||r_a - r_p||^2 - ||r_a - r_n||^2 + margin)

    ``variant="ratio"`` is the softmax-ratio loss of Hoffer & Ailon (2015), one of the two
    losses of seed project 003, on plain (not squared) distances ``d``::

        d+ = e^{d(a,p)} / (e^{d(a,p)} + e^{d(a,n)}) = sigmoid(d(a,p) - d(a,n));   l = (d+)^2

    Hoffer & Ailon's ``||(d+, d- - 1)||^2`` equals ``2 (d+)^2`` because ``d- = 1 - d+``; we drop
    the constant 2. It needs no margin (``margin`` is ignored) and, unlike the hinge, never
    stops pulling: its gradient only fades as ``d(a,n) - d(a,p)`` grows. ``sigmoid`` keeps it
    finite where the exponentials of the literal formula would overflow.

    Args:
        margin: hinge margin, in squared-distance units (with ``normalize=True`` squared
            distances lie in [0, 4]; FaceNet uses 0.2). Also bounds the semi-hard window.
        variant: ``"hinge"`` or ``"ratio"``.
        normalize: L2-normalise the embeddings inside the loss (scale invariance, FaceNet).
        miner: ``"all"`` valid triplets, ``"batch_hard"``, ``"semi_hard"`` or
            ``"nearest_impostors"`` (the paper's triplet baseline, Appendix B).
        impostor_fraction: in (0, 1], the share of each anchor's nearest impostors kept by
            the ``"nearest_impostors"`` miner (the paper tuned 0.007-0.18).
        reduction: ``"mean"`` over mined triplets, ``"sum"``, or ``"none"``: the ``(T,)``
            per-triplet losses, in the order of ``last_triplets``.

    A batch where the miner finds no triplet (e.g. every class has one example, or no
    negative is semi-hard) gives a zero loss that still has a ``grad_fn`` (zero gradients), so
    a training step never crashes; a batch of a single class raises ``ValueError``.
    Computed in float32 (float64 for float64 input) with autocast disabled.
    """

    def __init__(
        self,
        margin: float = 0.2,
        variant: str = "hinge",
        normalize: bool = True,
        miner: str = "nearest_impostors",
        impostor_fraction: float = 0.1,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.margin = check_float("margin", margin, minimum=0.0)
        self.variant = check_choice("variant", variant, VARIANTS)
        self.normalize = check_bool("normalize", normalize)
        self.miner = check_choice("miner", miner, MINERS)
        self.impostor_fraction = check_impostor_fraction(impostor_fraction)
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        self.last_triplets: Triplets | None = None

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with float32_batch(embeddings, labels, self.normalize) as x:  # (B, E)
            # The hinge of eq. 1 is on squared distances; the ratio on plain distances.
            distances = pairwise_distances(x, squared=self.variant == "hinge")  # (B, B)
            window = self.margin if self.variant == "hinge" else None
            triplets = mine(
                self.miner,
                labels,
                distances,
                margin=window,
                impostor_fraction=self.impostor_fraction,
            )
            self.last_triplets = triplets
            a, p, n = triplets
            d_ap, d_an = distances[a, p], distances[a, n]  # (T,), (T,)
            if self.variant == "hinge":
                losses = torch.relu(d_ap - d_an + self.margin)
            else:
                losses = torch.sigmoid(d_ap - d_an).pow(2)
        if losses.numel() == 0 and self.reduction != "none":
            return distances.sum() * 0.0  # no triplet: zero loss, still part of the graph
        return reduce_losses(losses, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, variant={self.variant!r}, normalize={self.normalize}, "
            f"miner={self.miner!r}, impostor_fraction={self.impostor_fraction}, "
            f"reduction={self.reduction!r}"
        )
