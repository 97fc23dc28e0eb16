"""Triplet miners: pure, vectorised functions from a batch to ``(anchor, positive, negative)``
index triplets, plus the batch checks and pairwise distances the pair/triplet losses share.

Every miner takes the labels ``(B,)`` (and, except :func:`all_triplets`, a detached ``(B, B)``
distance matrix) and returns :class:`Triplets` of ``(T,)`` int64 index tensors. A valid triplet
has ``a != p``, ``label[a] == label[p]`` and ``label[n] != label[a]``. No Python loop runs over
examples or triplets: each miner is a mask over ``(B, B)`` or ``(B, B, B)`` and a ``nonzero``
(semi-hard adds a sort and a batched binary search).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import check_choice, check_float

MINERS = ("all", "batch_hard", "semi_hard", "nearest_impostors")


class Triplets(NamedTuple):
    """Indices into the batch, each ``(T,)`` int64: anchors, positives, negatives."""

    anchors: torch.Tensor
    positives: torch.Tensor
    negatives: torch.Tensor


def check_batch(embeddings: torch.Tensor, labels: torch.Tensor, *, min_classes: int = 2) -> None:
    """Raise a clear error unless ``embeddings (B, E)`` and ``labels (B,)`` form a batch with
    finite values and at least ``min_classes`` distinct labels."""
    if not isinstance(embeddings, torch.Tensor) or not embeddings.is_floating_point():
        kind = type(embeddings).__name__
        if isinstance(embeddings, torch.Tensor):
            kind += f" of dtype {embeddings.dtype}"
        raise TypeError(
            f"embeddings must be a floating-point torch.Tensor of shape (B, E); got {kind}"
        )
    if embeddings.ndim != 2 or embeddings.shape[0] == 0:
        raise ValueError(
            f"embeddings must have shape (B, E) with B >= 1; got {tuple(embeddings.shape)}"
        )
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a 1-D integer tensor of shape (B,); got {shape}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must hold integers; got dtype {labels.dtype}")
    if labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"labels must have one entry per embedding (B={embeddings.shape[0]}); "
            f"got {labels.shape[0]}"
        )
    if not bool(torch.isfinite(embeddings).all()):
        raise ValueError(
            "embeddings must be finite; got NaN or inf (the network diverged: "
            "lower the learning rate, or check the input data)"
        )
    classes = int(torch.unique(labels).shape[0])
    if classes < min_classes:
        raise ValueError(
            f"the batch must hold at least {min_classes} classes (negatives come "
            f"from other classes); got {classes}. Sample class-balanced batches "
            "with at least two classes per batch"
        )


def compute_dtype(embeddings: torch.Tensor) -> torch.dtype:
    """float64 stays float64; everything else (half, bfloat16, float32) computes in float32."""
    return torch.float64 if embeddings.dtype == torch.float64 else torch.float32


@contextmanager
def float32_batch(
    embeddings: torch.Tensor, labels: torch.Tensor, normalize: bool = False
) -> Iterator[torch.Tensor]:
    """Validate a ``(B, E)`` batch, turn autocast off, and yield the embeddings in float32
    (float64 stays float64), L2-normalised when ``normalize``: everything computed inside the
    ``with`` block stays in full precision even under mixed-precision training."""
    check_batch(embeddings, labels)
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        x = embeddings.to(compute_dtype(embeddings))  # (B, E)
        yield F.normalize(x, dim=1) if normalize else x


def pairwise_distances(x: torch.Tensor, *, squared: bool) -> torch.Tensor:
    """``(B, B)`` Euclidean (or squared Euclidean) distances between the rows of ``x (B, E)``.

    Uses the expanded form ``||a||^2 - 2ab + ||b||^2`` (one matrix product: 10-20x faster than
    ``cdist``'s exact difference mode on CPU at B=48..256) after centring on the batch mean,
    which keeps it free of cancellation for embeddings far from 0. The diagonal is exactly 0,
    and the square root has gradient 0 (not NaN) wherever a distance is 0.
    """
    x = x - x.mean(dim=0, keepdim=True)  # distances are translation invariant
    norms = x.pow(2).sum(dim=1)  # (B,)
    squares = (norms.unsqueeze(1) - 2.0 * x @ x.T + norms.unsqueeze(0)).clamp_min(0.0)
    eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    squares = squares.masked_fill(eye, 0.0)  # (B, B)
    if squared:
        return squares
    tiny = torch.finfo(squares.dtype).tiny
    return torch.where(squares > 0, squares.clamp_min(tiny).sqrt(), torch.zeros_like(squares))


def _pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    same = labels.unsqueeze(0) == labels.unsqueeze(1)  # (B, B)
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same  # positive, negative


def _from_mask(mask: torch.Tensor) -> Triplets:
    a, p, n = mask.nonzero(as_tuple=True)
    return Triplets(a, p, n)


def all_triplets(labels: torch.Tensor) -> Triplets:
    """Every valid triplet of the batch, ordered by anchor, then positive, then negative."""
    positive, negative = _pair_masks(labels)
    return _from_mask(positive.unsqueeze(2) & negative.unsqueeze(1))  # (B, B, B)


def batch_hard(labels: torch.Tensor, distances: torch.Tensor) -> Triplets:
    """Batch-hard mining (Hermans et al. 2017): for each anchor that has a positive and a
    negative, its farthest positive and its nearest negative. One triplet per such anchor."""
    positive, negative = _pair_masks(labels)
    far = distances.masked_fill(~positive, float("-inf"))  # (B, B)
    near = distances.masked_fill(~negative, float("inf"))  # (B, B)
    anchors = (positive.any(1) & negative.any(1)).nonzero(as_tuple=True)[0]  # (T,)
    return Triplets(anchors, far[anchors].argmax(1), near[anchors].argmin(1))


def semi_hard(
    labels: torch.Tensor, distances: torch.Tensor, margin: float | None = None
) -> Triplets:
    """Semi-hard mining (Schroff et al., FaceNet, 2015, §3.2): for each anchor-positive pair,
    the nearest negative that is *farther* than the positive, ``d(a,p) < d(a,n)``, and, when
    ``margin`` is given, still inside it, ``d(a,n) < d(a,p) + margin`` (so the hinge is
    active). Pairs without such a negative give no triplet.
    """
    positive, negative = _pair_masks(labels)
    # Sort each anchor's negatives by distance (non-negatives last, at +inf); a binary search
    # of d(a, p) in that row finds the nearest negative beyond the positive in O(B^2 log B),
    # with no (B, B, B) tensor.
    near, order = distances.masked_fill(~negative, float("inf")).sort(dim=1)  # (B, B), (B, B)
    first = torch.searchsorted(near, distances.contiguous(), right=True)  # (B, B)
    first = first.clamp_max(labels.shape[0] - 1)
    d_an = near.gather(1, first)  # (B, B)
    window = positive & (d_an > distances) & torch.isfinite(d_an)
    if margin is not None:
        window &= d_an < distances + margin
    a, p = window.nonzero(as_tuple=True)
    return Triplets(a, p, order[a, first[a, p]])


def nearest_impostors(labels: torch.Tensor, distances: torch.Tensor, fraction: float) -> Triplets:
    """The paper's triplet mining (Rippel et al. 2016, Appendix B, "nearest impostor
    fraction"): for each anchor-positive pair, every negative among the nearest
    ``ceil(fraction * n_a)`` of that anchor's ``n_a`` impostors (other-class examples) in the
    batch. ``fraction=1`` gives :func:`all_triplets`; at least one impostor is always kept.
    """
    positive, negative = _pair_masks(labels)
    near = distances.masked_fill(~negative, float("inf"))  # (B, B)
    # rank[a, n] = position of n in a's impostors sorted by distance (ties by index).
    rank = near.argsort(dim=1, stable=True).argsort(dim=1)  # (B, B)
    keep = torch.ceil(negative.sum(1) * fraction).clamp_min(1).unsqueeze(1)  # (B, 1)
    chosen = negative & (rank < keep)  # (B, B)
    return _from_mask(positive.unsqueeze(2) & chosen.unsqueeze(1))


def mine(
    miner: str,
    labels: torch.Tensor,
    distances: torch.Tensor,
    *,
    margin: float | None = None,
    impostor_fraction: float = 1.0,
) -> Triplets:
    """Dispatch to the miner called ``miner`` (one of :data:`MINERS`)."""
    check_choice("miner", miner, MINERS)
    distances = distances.detach()
    if miner == "all":
        return all_triplets(labels)
    if miner == "batch_hard":
        return batch_hard(labels, distances)
    if miner == "semi_hard":
        return semi_hard(labels, distances, margin)
    return nearest_impostors(labels, distances, impostor_fraction)


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is a ``bool`` (numpy bools too), else raise ``TypeError``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"{name} must be True or False; got {value!r} of type {type(value).__name__}"
        )
    return bool(value)


def check_impostor_fraction(value: float) -> float:
    """``impostor_fraction`` must lie in (0, 1]: the share of each anchor's impostors kept."""
    return check_float(
        "impostor_fraction",
        value,
        strict_minimum=0.0,
        maximum=1.0,
        fix="the share of each anchor's impostors kept, e.g. 0.1",
    )
