"""Magnet Loss (Rippel et al., ICLR 2016, eqs. 4-5), computed exactly and in log space."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .._validation import check_choice, check_float
from .cluster_batch import BatchClusters, batch_clusters, check_finite, check_variance
from .cluster_terms_cpu import CPUClusterTerms
from .reduction import REDUCTIONS, reduce_losses


class MagnetTerms(NamedTuple):
    """Per-example losses ``(B,)`` and the batch variance estimate ``s2`` (a 0-d tensor)."""

    losses: torch.Tensor
    variance: torch.Tensor


class ClusterTerms(NamedTuple):
    """The pieces Magnet Loss and cluster-NCA are built from, all in the compute dtype:

    ``own (B,)`` = ``s ||r_n - mu(r_n)||^2 / (2 s2)``; ``impostors (B,)`` =
    ``logsumexp_{m: class(m) != C(n)} -s ||r_n - mu_m||^2 / (2 s2)``; ``variance`` = ``s2``
    (``s`` the inverse temperature ``scale``; ``s = 1`` is paper eq. 5).
    """

    own: torch.Tensor
    impostors: torch.Tensor
    variance: torch.Tensor


def _check_batch(embeddings: torch.Tensor, labels: torch.Tensor, clusters: torch.Tensor) -> None:
    if not isinstance(embeddings, torch.Tensor) or not embeddings.is_floating_point():
        raise TypeError(
            "embeddings must be a floating-point torch.Tensor of shape (B, D); "
            f"got {type(embeddings).__name__}"
            + (f" of dtype {embeddings.dtype}" if isinstance(embeddings, torch.Tensor) else "")
        )
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must have shape (B, D); got {tuple(embeddings.shape)}")
    for name, value in (("labels", labels), ("clusters", clusters)):
        if not isinstance(value, torch.Tensor) or value.ndim != 1:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"{name} must be a 1-D integer tensor of shape (B,); got {shape}")
        if value.is_floating_point() or value.is_complex():
            raise TypeError(f"{name} must hold integers; got dtype {value.dtype}")
        if value.shape[0] != embeddings.shape[0]:
            raise ValueError(
                f"{name} must have one entry per embedding (B={embeddings.shape[0]}); "
                f"got {value.shape[0]}"
            )


def cluster_terms(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    clusters: torch.Tensor,
    variance: float | None = None,
    scale: float = 1.0,
) -> ClusterTerms:
    """Validate a batch and compute :class:`ClusterTerms` (see :func:`magnet_loss_terms`).

    Computed in float32 (float64 for float64 input) with autocast disabled, so half-precision
    training never underflows the exponentials. On the CPU by :class:`CPUClusterTerms` (numpy,
    with its gradient written out: ~2x cheaper inside a training step), elsewhere by autograd.
    """
    _check_batch(embeddings, labels, clusters)
    scale = check_scale(scale)
    if variance is not None:
        variance = check_float("variance", variance, strict_minimum=0.0)
    layout = batch_clusters(labels, clusters, estimate_variance=variance is None)
    compute_dtype = torch.float64 if embeddings.dtype == torch.float64 else torch.float32
    x = embeddings.to(compute_dtype)
    if x.device.type == "cpu":
        return ClusterTerms(*CPUClusterTerms.apply(x, layout, variance, scale))
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        return autograd_cluster_terms(x, layout, variance, scale)


def check_scale(scale: float, name: str = "scale") -> float:
    """Validate the inverse temperature ``s`` of the variance-normalised distances."""
    return check_float(
        name,
        scale,
        strict_minimum=0.0,
        fix="the inverse temperature multiplies the distances; 1 is paper eq. 5",
    )


def autograd_cluster_terms(
    x: torch.Tensor, layout: BatchClusters, variance: float | None, scale: float
) -> ClusterTerms:
    """:class:`ClusterTerms` of a float32/float64 batch ``x (B, E)`` in torch operations,
    differentiated by autograd (any device; :class:`CPUClusterTerms` is the CPU's form)."""
    check_finite(bool(torch.isfinite(x).all()))
    member_of = torch.as_tensor(layout.member_of, device=x.device)  # (B,)
    counts = torch.as_tensor(layout.counts, device=x.device)  # (M,)
    # Distances are translation invariant: centring on the batch mean keeps the expanded
    # form ||a||^2 - 2ab + ||b||^2 below free of cancellation for embeddings far from 0.
    x = x - x.mean(dim=0, keepdim=True)
    means = torch.zeros(counts.shape[0], x.shape[1], dtype=x.dtype, device=x.device)
    means = means.index_add(0, member_of, x) / counts.unsqueeze(1).to(x.dtype)  # (M, D)
    intra = (x - means[member_of]).pow(2).sum(dim=1)  # (B,)
    if variance is None:
        s2 = intra.sum() / (x.shape[0] - 1)
        check_variance(float(s2.detach()))
    else:
        s2 = torch.tensor(variance, dtype=x.dtype, device=x.device)
    squared = (
        x.pow(2).sum(1, keepdim=True) - 2.0 * x @ means.T + means.pow(2).sum(1).unsqueeze(0)
    ).clamp_min(0.0)  # (B, M)
    # the inverse temperature multiplies every variance-normalised distance, own and impostor
    temperature = scale / (2.0 * s2)
    logits = -squared * temperature  # (B, M)
    same_class = torch.as_tensor(layout.same_class, device=x.device)  # (B, M)
    impostors = torch.logsumexp(logits.masked_fill(same_class, float("-inf")), dim=1)
    return ClusterTerms(intra * temperature, impostors, s2)


def magnet_loss_terms(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    clusters: torch.Tensor,
    alpha: float = 1.0,
    variance: float | None = None,
    scale: float = 1.0,
) -> MagnetTerms:
    """Magnet Loss per example, paper eq. 5, with the batch variance it used.

    For a batch of ``B = M*D`` embeddings ``r_n`` in ``M`` clusters::

        mu_m = mean of the embeddings of batch cluster m
        s2   = sum_n ||r_n - mu(r_n)||^2 / (B - 1)
        l_n  = max(0, s ||r_n - mu(r_n)||^2 / (2 s2) + alpha
                      + logsumexp_{m: class(m) != C(n)} -s ||r_n - mu_m||^2 / (2 s2))

    ``s`` (``scale``) is the paper's "global scaling" of App. B, read as an inverse
    temperature: ``s = 1`` is eq. 5 exactly; larger ``s`` concentrates the log-sum-exp on the
    nearest impostor cluster. The loss stays invariant to the embedding's scale for every ``s``.

    The denominator is masked by *class*: clusters of the example's own class appear neither in
    the numerator nor in the denominator. Gradients flow through ``mu_m`` and ``s2``.

    Args:
        embeddings: ``(B, D)`` floating tensor. Half precision is computed in float32.
        labels: ``(B,)`` integer class of each example.
        clusters: ``(B,)`` integer cluster id of each example: any ids, in any order; each id
            must belong to one class.
        alpha: the margin, in units of the variance.
        variance: a fixed ``sigma^2`` to use instead of the batch estimate ``s2`` (``None``:
            estimate, which needs at least two examples in every cluster). ``variance=0.5``
            gives the unstandardised form of paper §3.4.
        scale: the inverse temperature ``s > 0`` (k-nearest-cluster evaluation of a model
            trained with ``s`` uses the lengthscale ``sigma^2 / s``).

    Returns:
        ``MagnetTerms(losses (B,), variance ())`` in float32 (float64 for float64 input).
    """
    alpha = check_float("alpha", alpha)
    terms = cluster_terms(embeddings, labels, clusters, variance, scale)
    losses = torch.relu(terms.own + alpha + terms.impostors)  # (B,)
    return MagnetTerms(losses, terms.variance)


class MagnetLoss(nn.Module):
    """Magnet Loss (paper eq. 5) as a module.

    ``loss = MagnetLoss(alpha=1.0, scale=1.0)(embeddings (B, D), labels (B,), clusters (B,))``.
    With ``reduction="none"`` it returns the ``(B,)`` per-example losses (the neighbourhood
    sampler caches them). After each call, ``last_variance`` holds the detached batch ``s2``,
    from which training keeps the running ``sigma^2``; k-nearest-cluster evaluation uses the
    lengthscale ``sigma^2 / scale``, consistent with the training objective.
    See :func:`magnet_loss_terms` for the equations.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        reduction: str = "mean",
        variance: float | None = None,
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        # a negative margin makes every example "satisfied": the loss trains nothing
        self.alpha = check_float(
            "alpha",
            alpha,
            minimum=0.0,
            fix="the margin in units of the variance, ~1 (paper: 0.7-7)",
        )
        self.scale = check_scale(scale)
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        self.variance = (
            None if variance is None else check_float("variance", variance, strict_minimum=0.0)
        )
        self.last_variance: torch.Tensor | None = None

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, clusters: torch.Tensor
    ) -> torch.Tensor:
        terms = magnet_loss_terms(
            embeddings, labels, clusters, self.alpha, self.variance, self.scale
        )
        self.last_variance = terms.variance.detach()
        return reduce_losses(terms.losses, self.reduction)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, scale={self.scale}, reduction={self.reduction!r}"
