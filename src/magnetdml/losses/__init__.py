"""Loss modules (layer 1: pure ``forward``; no sampling, no index, no I/O).

Every loss is registered under its CLI name in ``LOSSES``; ``build_loss`` makes one from the
name, the embedding size and the class count (some losses, such as softmax, own parameters).
Each loss module has the class attribute ``requires_clusters`` (True: ``forward`` takes
``(embeddings, labels, clusters)`` and training draws neighbourhoods from a cluster index;
False: ``forward(embeddings, labels)`` and training draws class-balanced batches).
"""

from __future__ import annotations

from torch import nn

from ..registry import Registry
from .magnet import ClusterTerms, MagnetLoss, MagnetTerms, cluster_terms, magnet_loss_terms

LOSSES: Registry[nn.Module] = Registry("loss")


@LOSSES.register("magnet")
def _magnet(*, embedding_dim: int, num_classes: int, alpha: float = 1.0, **_: object) -> nn.Module:
    return MagnetLoss(alpha=alpha)


def build_loss(name: str, *, embedding_dim: int, num_classes: int, **params: object) -> nn.Module:
    """Make the loss registered as ``name``; ``params`` are the loss config's fields
    (each factory takes the ones it uses and ignores the rest)."""
    return LOSSES.get(name)(embedding_dim=embedding_dim, num_classes=num_classes, **params)


__all__ = ["LOSSES", "ClusterTerms", "MagnetLoss", "MagnetTerms", "build_loss", "cluster_terms",
           "magnet_loss_terms"]
