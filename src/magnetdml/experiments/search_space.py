"""Every loss's search space, in one table: which hyperparameters, over which ranges, and why.

:data:`SPACES` maps a loss name (a name of ``LOSSES``, or ``pml:ClassName`` for a
pytorch-metric-learning loss) to its searched :class:`Param`\\ s; every loss also searches
:data:`COMMON` (the learning rate and its per-pass annealing, tuned for every loss in the
paper's App. B). Each range names its source in ``Param.source``:

* **App. B** (Rippel et al. 2016) gives the optima its random search found, not the ranges:
  lr 0.0006-0.024, annealing 0.966-0.995 or none, alpha 0.70-7.18, "global scaling" (our
  inverse temperature ``loss.scale``) 2.33-14.2, K 1-16, M x D <= 48 (the memory bound; best
  12 x 4), triplet gap 0.30-0.55 and nearest-impostor fraction 0.007-0.18. The ranges here
  bracket those optima with room on each side.
* **PML** (pytorch-metric-learning 2.9): a range around the class's default keyword value,
  and the range that "A Metric Learning Reality Check" (Musgrave et al. 2020, App.) searched
  where it gives one.

:func:`space_for` looks a loss up; a ``pml:`` loss without an entry searches :data:`COMMON`
only (its own keywords stay at PML's defaults). To give a loss its space, add an entry to
:data:`SPACES` (fields ``loss.options.NAME`` set that keyword of ``--loss.options``).
:class:`~magnetdml.experiments.trial_space.SearchSpace` adds a user's ``--space`` ranges to a
loss's entry and draws one trial's values from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter: the config field it sets, its range and the range's source.

    ``log``: log-uniform (rates, temperatures, margins spanning decades), else uniform;
    ``integer``: an integer in ``[low, high]``. ``minimum`` / ``maximum``: the hard limits
    a user's ``--space.NAME LOW:HIGH`` must respect."""

    field: str
    low: float
    high: float
    log: bool = False
    integer: bool = False
    source: str = ""
    minimum: float = 0.0
    maximum: float = math.inf

    def check_range(self, name: str, low: float, high: float) -> None:
        strict = self.minimum == 0  # no searched parameter may be 0 (or < 0)
        rule = (
            f"space.{name} must be LOW:HIGH with {self.minimum:g} "
            f"{'<' if strict else '<='} LOW <= HIGH "
            f"<= {self.maximum:g}{' (integers)' if self.integer else ''}"
        )
        bad = (
            low > high
            or low < self.minimum
            or high > self.maximum
            or (strict and low <= 0)
            or (self.integer and (low != int(low) or high != int(high)))
        )
        if bad:
            fix = "; swap the bounds" if low > high else ""
            raise ValueError(f"{rule}; got {low:g}:{high:g}{fix}")


APP_B = "paper App. B"
#: Searched for every loss (paper App. B tunes both for softmax, triplet and Magnet).
COMMON: dict[str, Param] = {
    "lr": Param(
        "train.lr",
        1e-4,
        1e-1,
        log=True,
        source=f"{APP_B}: optima 6e-4 to 2.4e-2, a decade of room each side",
    ),
    "lr_decay": Param(
        "train.lr_decay",
        0.9,
        1.0,
        maximum=1.0,
        source=f"{APP_B}: per-pass annealing optima 0.966-0.995 or none (1)",
    ),
}
#: The cluster losses' index and batch (Magnet's App. B space), drawn in this order: K caps M,
#: M caps D.
CLUSTERS: dict[str, Param] = {
    "clusters_per_class": Param(
        "index.clusters_per_class",
        1,
        16,
        log=True,
        integer=True,
        minimum=1,
        source=f"{APP_B}: K 1-16",
    ),
    "clusters_per_batch": Param(
        "sampler.clusters_per_batch",
        2,
        24,
        integer=True,
        minimum=2,
        source=f"{APP_B}: M with M x D <= 48 (best 12)",
    ),
    "examples_per_cluster": Param(
        "sampler.examples_per_cluster",
        2,
        8,
        integer=True,
        minimum=2,
        source=f"{APP_B}: D with M x D <= 48 (best 4)",
    ),
}
#: Searched for any loss, but only when the user gives a range (``--space.weight_decay``).
OPTIONAL: dict[str, Param] = {
    "weight_decay": Param(
        "train.weight_decay",
        1e-6,
        1e-3,
        log=True,
        source="not in App. B: a remedy for Magnet's scale-invariant embedding growing under SGD",
    ),
}


def _pml(keyword: str, low: float, high: float, default: str, log: bool = True) -> Param:
    """A keyword of a pytorch-metric-learning loss, searched around its PML default."""
    return Param(
        f"loss.options.{keyword}", low, high, log=log, source=f"around PML 2.9's default {default}"
    )


#: loss name -> its own searched parameters (:data:`COMMON` is added to every entry).
SPACES: dict[str, dict[str, Param]] = {
    "magnet": {
        "alpha": Param("loss.alpha", 0.5, 10.0, log=True, source=f"{APP_B}: optima 0.70-7.18"),
        "scale": Param(
            "loss.scale", 0.5, 20.0, log=True, source=f"{APP_B}: 'global scaling' optima 2.33-14.2"
        ),
        **CLUSTERS,
    },
    "cluster_nca": {
        "scale": Param("loss.scale", 0.5, 20.0, log=True, source="Magnet's App. B range"),
        **CLUSTERS,
    },
    "triplet": {
        "margin": Param("loss.margin", 0.05, 1.0, log=True, source=f"{APP_B}: gap 0.30-0.55"),
        "impostor_fraction": Param(
            "loss.impostor_fraction",
            0.005,
            0.5,
            log=True,
            maximum=1.0,
            source=f"{APP_B}: 0.007-0.18",
        ),
    },
    "contrastive": {
        "margin": Param(
            "loss.margin",
            0.05,
            2.0,
            log=True,
            source="around this project's default 1.0 (Hadsell et al. 2006)",
        )
    },
    "lifted": {
        "margin": Param(
            "loss.margin",
            0.05,
            2.0,
            log=True,
            source="around this project's default 1.0 (Song et al. 2016)",
        )
    },
    "softmax": {},
    # pytorch-metric-learning's losses: keywords of --loss.options, ranges around PML's defaults
    "pml:ProxyAnchorLoss": {
        "margin": _pml("margin", 0.01, 0.5, "0.1 (Kim et al. 2020)"),
        "alpha": _pml("alpha", 4.0, 128.0, "32 (Kim et al. 2020)"),
    },
    "pml:MultiSimilarityLoss": {
        "alpha": _pml("alpha", 0.5, 8.0, "2 (Wang et al. 2019)"),
        "beta": _pml("beta", 10.0, 100.0, "50 (Wang et al. 2019)"),
        "base": _pml("base", 0.3, 0.8, "0.5 (Wang et al. 2019)", log=False),
    },
    "pml:NormalizedSoftmaxLoss": {
        "temperature": _pml("temperature", 0.01, 0.2, "0.05 (Zhai & Wu 2019)")
    },
    "pml:ArcFaceLoss": {
        "margin": _pml("margin", 10.0, 45.0, "28.6 degrees (Deng et al. 2019)", log=False),
        "scale": _pml("scale", 16.0, 128.0, "64 (Deng et al. 2019)"),
    },
    "pml:SoftTripleLoss": {
        "centers_per_class": Param(
            "loss.options.centers_per_class",
            1,
            16,
            log=True,
            integer=True,
            minimum=1,
            source="PML default 10 (Qian et al. 2019); App. B's K range",
        ),
        "la": _pml("la", 5.0, 80.0, "20 (Qian et al. 2019)"),
        "gamma": _pml("gamma", 0.03, 0.3, "0.1 (Qian et al. 2019)"),
        "margin": _pml("margin", 0.001, 0.1, "0.01 (Qian et al. 2019)"),
    },
    "pml:ProxyNCALoss": {
        "softmax_scale": _pml("softmax_scale", 0.5, 32.0, "1 (Movshovitz-Attias et al. 2017)")
    },
    "pml:SupConLoss": {"temperature": _pml("temperature", 0.03, 0.5, "0.1 (Khosla et al. 2020)")},
}


def space_for(loss: str) -> dict[str, Param]:
    """The searched parameters of ``loss``: :data:`COMMON` plus its :data:`SPACES` entry
    (a loss without one, e.g. a ``pml:`` loss: :data:`COMMON` only; an unknown loss: refused
    with the registry's did-you-mean)."""
    if loss in SPACES:
        return {**COMMON, **SPACES[loss]}
    from ..losses import loss_spec

    # an unknown name: one line with a did-you-mean; a loss without an entry: COMMON, and the
    # cluster index and batch when it trains on neighbourhoods
    return {**COMMON, **(CLUSTERS if loss_spec(loss).uses_index else {})}


def all_params() -> dict[str, Param]:
    """Every parameter name any space uses (for ``--space.NAME`` flags)."""
    names: dict[str, Param] = {**COMMON, **OPTIONAL}
    for space in SPACES.values():
        for name, param in space.items():
            names.setdefault(name, param)
    return names
