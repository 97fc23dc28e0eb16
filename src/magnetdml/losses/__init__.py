"""Loss modules (layer 1: pure ``forward``; no sampling, no index, no I/O).

Every loss is registered under its CLI name in ``LOSSES``; ``build_loss`` makes one from the
name, the embedding size and the class count (some losses, such as softmax, own parameters).
Each loss module has the class attribute ``requires_clusters`` (True: ``forward`` takes
``(embeddings, labels, clusters)`` and training draws neighbourhoods from a cluster index;
False: ``forward(embeddings, labels)`` and training draws class-balanced batches, or the
uniformly shuffled batches of a loss whose class attribute ``default_batches`` says
``"uniform"``, as softmax's does: see :func:`default_batches`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import Registry
from .cluster_nca import ClusterNCALoss
from .contrastive import ContrastiveLoss
from .lifted import LiftedStructureLoss
from .magnet import ClusterTerms, MagnetLoss, MagnetTerms, cluster_terms, magnet_loss_terms
from .miners import MINERS, Triplets
from .softmax import SoftmaxLoss
from .triplet import TripletLoss

LOSSES: Registry[nn.Module] = Registry("loss")


@LOSSES.register("magnet")
def _magnet(*, embedding_dim: int, num_classes: int, alpha: float = 1.0, scale: float = 1.0,
            **_: object) -> nn.Module:
    return MagnetLoss(alpha=alpha, scale=scale)


# The baselines' factories. A loss-config field left at None takes the loss's own default, so
# one shared ``margin`` / ``normalize`` field can serve losses whose natural defaults differ.
def _given(params: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in params.items() if value is not None}


@LOSSES.register("softmax")
def _softmax(*, embedding_dim: int, num_classes: int, **_: object) -> nn.Module:
    return SoftmaxLoss(embedding_dim=embedding_dim, num_classes=num_classes)


@LOSSES.register("triplet")
def _triplet(*, embedding_dim: int, num_classes: int, margin: float | None = None,
             triplet_variant: str | None = None, normalize: bool | None = None,
             miner: str | None = None, impostor_fraction: float | None = None,
             **_: object) -> nn.Module:
    return TripletLoss(**_given(dict(margin=margin, variant=triplet_variant, normalize=normalize,
                                     miner=miner, impostor_fraction=impostor_fraction)))


@LOSSES.register("contrastive")
def _contrastive(*, embedding_dim: int, num_classes: int, margin: float | None = None,
                 positive_margin: float | None = None, normalize: bool | None = None,
                 **_: object) -> nn.Module:
    return ContrastiveLoss(**_given(dict(margin=margin, positive_margin=positive_margin,
                                         normalize=normalize)))


@LOSSES.register("lifted")
def _lifted(*, embedding_dim: int, num_classes: int, margin: float | None = None,
            normalize: bool | None = None, **_: object) -> nn.Module:
    return LiftedStructureLoss(**_given(dict(margin=margin, normalize=normalize)))


@LOSSES.register("cluster_nca")
def _cluster_nca(*, embedding_dim: int, num_classes: int, scale: float = 1.0,
                 **_: object) -> nn.Module:
    return ClusterNCALoss(scale=scale)


def default_batches(name: str) -> str:
    """How the loss registered as ``name`` draws its batches unless told otherwise
    (``sampler.batches auto``): ``"neighbourhood"`` for cluster losses, else the loss's
    ``default_batches`` (softmax: ``"uniform"``), else ``"class_balanced"`` (P x K)."""
    # a throwaway instance: its weights (softmax's classifier) must not consume the global
    # torch random state, or asking which sampler to use would shift a seeded run's draws
    with torch.random.fork_rng(devices=[]):
        loss = build_loss(name, embedding_dim=2, num_classes=2)
    if getattr(loss, "requires_clusters", False):
        return "neighbourhood"
    return getattr(loss, "default_batches", "class_balanced")


def build_loss(name: str, *, embedding_dim: int, num_classes: int, **params: object) -> nn.Module:
    """Make the loss registered as ``name``; ``params`` are the loss config's fields
    (each factory takes the ones it uses and ignores the rest)."""
    return LOSSES.get(name)(embedding_dim=embedding_dim, num_classes=num_classes, **params)


__all__ = ["LOSSES", "MINERS", "ClusterNCALoss", "ClusterTerms", "ContrastiveLoss",
           "LiftedStructureLoss", "MagnetLoss", "MagnetTerms", "SoftmaxLoss", "TripletLoss",
           "Triplets", "build_loss", "cluster_terms", "default_batches", "magnet_loss_terms"]
