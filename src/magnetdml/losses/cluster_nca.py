"""Cluster-NCA: Magnet Loss without the hinge and margin (Rippel et al. 2016, §3.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_choice, check_float
from .magnet import check_scale, cluster_terms
from .reduction import REDUCTIONS, reduce_losses


class ClusterNCALoss(nn.Module):
    """The cluster-based analogue of NCA (paper §3.1): Magnet's objective, eq. 4, with the
    hinge and the margin removed.

    ``loss = ClusterNCALoss()(embeddings (B, E), labels (B,), clusters (B,))``, batch laid out
    as Magnet's (``M`` clusters x ``D`` examples). With ``mu_m`` and ``s2`` the batch cluster
    means and variance of :func:`~magnetdml.losses.magnet.cluster_terms`::

        own_n       = s ||r_n - mu(r_n)||^2 / (2 s2)
        impostors_n = logsumexp_{m: class(m) != C(n)} -s ||r_n - mu_m||^2 / (2 s2)
        l_n = -log( exp(-own_n) / (exp(-own_n) + sum_{m: class(m) != C(n)}
                                                 exp(-s ||r_n - mu_m||^2 / (2 s2))) )
            = log(1 + exp(own_n + impostors_n)) = softplus(own_n + impostors_n)

    Unlike Magnet Loss it never reaches 0: well-separated examples keep a small pull.

    Args:
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (the ``(B,)`` per-example losses that
            the neighbourhood sampler caches).
        variance: a fixed ``sigma^2`` instead of the batch estimate ``s2`` (``None``: estimate).
        scale: the inverse temperature ``s > 0`` of Magnet Loss (``1``: eq. 4 as written).

    After each call ``last_variance`` holds the detached ``s2`` (the running ``sigma^2`` of
    k-nearest-cluster evaluation is kept from it). Batch checks and errors are Magnet's.
    """

    def __init__(
        self, reduction: str = "mean", variance: float | None = None, scale: float = 1.0
    ) -> None:
        super().__init__()
        self.scale = check_scale(scale)
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        self.variance = (
            None if variance is None else check_float("variance", variance, strict_minimum=0.0)
        )
        self.last_variance: torch.Tensor | None = None

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, clusters: torch.Tensor
    ) -> torch.Tensor:
        terms = cluster_terms(embeddings, labels, clusters, self.variance, self.scale)
        self.last_variance = terms.variance.detach()
        losses = F.softplus(terms.own + terms.impostors)  # (B,)
        return reduce_losses(losses, self.reduction)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, reduction={self.reduction!r}"
