"""Loss modules (layer 1: pure ``forward``; no sampling, no index, no I/O).

Every loss is declared once, by a :class:`~.spec.LossSpec` in ``LOSSES``: which batches it
trains on, whether it needs the cluster index, whether it owns parameters, how its embeddings
are scored and which loss-config fields it reads. Callers ask the spec (``loss_spec(name)``),
never the name. :func:`build_loss` makes a loss from its name, the embedding size and the
class count. ``pml:CLASSNAME`` names any pytorch-metric-learning loss (``losses/pml.py``).
"""

from __future__ import annotations

from torch import nn

from . import pml
from .cluster_nca import ClusterNCALoss
from .contrastive import ContrastiveLoss
from .lifted import LiftedStructureLoss
from .magnet import ClusterTerms, MagnetLoss, MagnetTerms, cluster_terms, magnet_loss_terms
from .miners import MINERS, Triplets
from .options import UNSET, split_loss_params
from .pml import PMLLoss
from .softmax import SoftmaxLoss
from .spec import BATCH_KINDS, LOSSES, LossSpec, loss_spec
from .triplet import TripletLoss


# A loss-config field left at None takes the loss's own default, so one shared ``margin`` /
# ``normalize`` field can serve losses whose natural defaults differ.
def _given(**params: object) -> dict[str, object]:
    return {key: value for key, value in params.items() if value is not None}


def _magnet(*, embedding_dim, num_classes, alpha=1.0, scale=1.0):
    return MagnetLoss(alpha=alpha, scale=scale)


def _cluster_nca(*, embedding_dim, num_classes, scale=1.0):
    return ClusterNCALoss(scale=scale)


def _softmax(*, embedding_dim, num_classes):
    return SoftmaxLoss(embedding_dim=embedding_dim, num_classes=num_classes)


def _triplet(
    *,
    embedding_dim,
    num_classes,
    margin=None,
    triplet_variant=None,
    normalize=None,
    miner=None,
    impostor_fraction=None,
):
    return TripletLoss(
        **_given(
            margin=margin,
            variant=triplet_variant,
            normalize=normalize,
            miner=miner,
            impostor_fraction=impostor_fraction,
        )
    )


def _contrastive(*, embedding_dim, num_classes, margin=None, positive_margin=None, normalize=None):
    return ContrastiveLoss(
        **_given(margin=margin, positive_margin=positive_margin, normalize=normalize)
    )


def _lifted(*, embedding_dim, num_classes, margin=None, normalize=None):
    return LiftedStructureLoss(**_given(margin=margin, normalize=normalize))


for _spec in (
    LossSpec(
        "magnet",
        _magnet,
        "neighbourhood",
        ("alpha", "scale"),
        own_scores="knc",
        source="Rippel et al. 2016, eq. 5",
    ),
    LossSpec(
        "cluster_nca",
        _cluster_nca,
        "neighbourhood",
        ("scale",),
        own_scores="knc",
        source="NCA over cluster centres (Magnet without the margin)",
    ),
    # softmax: uniform batches, its standard protocol (P x K batches show the classifier only
    # P of its classes per step; with many classes its loss then stays near chance)
    LossSpec(
        "softmax",
        _softmax,
        "uniform",
        (),
        own_scores="classifier",
        has_parameters=True,
        source="cross-entropy through a linear classifier (paper §4)",
    ),
    LossSpec(
        "triplet",
        _triplet,
        "class_balanced",
        ("margin", "triplet_variant", "normalize", "miner", "impostor_fraction"),
        source="Weinberger & Saul 2009; paper eq. 1",
    ),
    LossSpec(
        "contrastive",
        _contrastive,
        "class_balanced",
        ("margin", "positive_margin", "normalize"),
        source="Hadsell et al. 2006",
    ),
    LossSpec(
        "lifted", _lifted, "class_balanced", ("margin", "normalize"), source="Oh Song et al. 2016"
    ),
):
    LOSSES.register(_spec)
LOSSES.add_resolver(pml.PREFIX, pml.resolve)


def build_loss(name: str, *, embedding_dim: int, num_classes: int, **params: object) -> nn.Module:
    """Make the loss registered as ``name`` from the loss-config fields it reads.

    ``params`` may hold every loss-config field: those the loss does not read must be at
    their "unset" value (``None``, or ``options`` empty); a set one raises ``ValueError``
    naming it and the losses it applies to, so that no setting is silently ignored. Unknown
    keywords raise ``TypeError``."""
    spec = loss_spec(name)
    return spec.factory(
        embedding_dim=embedding_dim, num_classes=num_classes, **split_loss_params(spec, params)
    )


__all__ = [
    "BATCH_KINDS",
    "LOSSES",
    "MINERS",
    "ClusterNCALoss",
    "ClusterTerms",
    "ContrastiveLoss",
    "LiftedStructureLoss",
    "LossSpec",
    "MagnetLoss",
    "MagnetTerms",
    "PMLLoss",
    "SoftmaxLoss",
    "TripletLoss",
    "Triplets",
    "UNSET",
    "build_loss",
    "cluster_terms",
    "loss_spec",
    "magnet_loss_terms",
]
