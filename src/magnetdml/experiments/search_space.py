"""The search space of ``magnetdml search``: which hyperparameters, over which ranges.

The paper (Appendix B) tunes, by random search on validation error, the learning rate and
its per-epoch annealing factor for every loss; for Magnet Loss also the gap ``alpha``, the
clusters per batch ``M``, the examples per cluster ``D`` (``M * D <= 48``) and the clusters per
class ``K``; for triplet loss the margin and the fraction of nearest impostors. Appendix B
gives the optima found (lr 0.0006-0.024, annealing 0.966-0.995 or none, alpha 0.70-7.18, K
1-16, triplet gap 0.30-0.55, impostor fraction 0.007-0.18) but not the ranges;
``DEFAULT_SPACE`` brackets those optima with some room on each side. Magnet Loss's fifth
hyperparameter, the "global scaling" (optima 2.33-14.2), is the inverse temperature
``loss.scale`` here. Weight decay (``OPTIONAL``) is searched only when given a range: it is
one remedy for Magnet's scale-invariant embedding growing under SGD. :class:`SearchSpace`
picks the parameters of one loss, applies the user's ``--space.NAME LOW:HIGH`` ranges and
draws one trial's values from a seeded generator.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .._validation import check_int


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter: the config field it sets and its distribution."""

    field: str                 # the config field, e.g. "train.lr"
    low: float
    high: float
    scale: str                 # "log": log-uniform; "linear": uniform
    integer: bool = False      # round to an integer (log scale: log-uniform over integers)
    minimum: float = 0.0       # hard limit of any user range
    maximum: float = math.inf
    help: str = ""

    def check_range(self, name: str, low: float, high: float) -> None:
        strict = self.minimum == 0          # no searched parameter may be 0 (or < 0)
        rule = (f"space.{name} must be LOW:HIGH with {self.minimum:g} "
                f"{'<' if strict else '<='} LOW <= HIGH "
                f"<= {self.maximum:g}{' (integers)' if self.integer else ''}")
        bad = (low > high or low < self.minimum or high > self.maximum or (strict and low <= 0)
               or (self.integer and (low != int(low) or high != int(high))))
        if bad:
            fix = "; swap the bounds" if low > high else ""
            raise ValueError(f"{rule}; got {low:g}:{high:g}{fix}")


DEFAULT_SPACE: dict[str, Param] = {
    "lr": Param("train.lr", 1e-4, 1e-1, "log", help="learning rate (paper: 6e-4 to 2.4e-2)"),
    "lr_decay": Param("train.lr_decay", 0.9, 1.0, "linear", maximum=1.0,
                      help="learning rate *= this every epoch (paper: 0.966-0.995 or 1)"),
    "alpha": Param("loss.alpha", 0.5, 10.0, "log", help="Magnet gap (paper: 0.70-7.18)"),
    "scale": Param("loss.scale", 0.5, 20.0, "log",
                   help="Magnet inverse temperature, 'global scaling' (paper: 2.33-14.2)"),
    "clusters_per_batch": Param("sampler.clusters_per_batch", 2, 24, "linear", integer=True,
                                minimum=2, help="M, clusters per batch (M * D <= max_batch)"),
    "examples_per_cluster": Param("sampler.examples_per_cluster", 2, 8, "linear",
                                  integer=True, minimum=2, help="D, examples per cluster"),
    "clusters_per_class": Param("index.clusters_per_class", 1, 16, "log", integer=True,
                                minimum=1, help="K, k-means clusters per class (paper: 1-16)"),
    "margin": Param("loss.margin", 0.05, 1.0, "log", help="triplet/contrastive/lifted margin"),
    "impostor_fraction": Param("loss.impostor_fraction", 0.005, 0.5, "log", maximum=1.0,
                               help="triplet: share of nearest impostors (paper: 0.007-0.18)"),
    "weight_decay": Param("train.weight_decay", 1e-6, 1e-3, "log",
                          help="L2 weight decay (searched only when given a range)"),
}
CLUSTER_PARAMS = ("clusters_per_batch", "examples_per_cluster", "clusters_per_class")
#: searched for any loss, but only when the user gives a range
OPTIONAL = ("weight_decay",)
_LOSS_PARAMS = {"magnet": ("alpha", "scale"), "cluster_nca": ("scale",),
                "triplet": ("margin", "impostor_fraction"), "contrastive": ("margin",),
                "lifted": ("margin",)}


class SearchSpace:
    """The hyperparameters searched for one loss, with optional user ranges.

    ``overrides`` maps a name of ``DEFAULT_SPACE`` to ``"LOW:HIGH"`` (a range on the
    parameter's own scale) or ``"VALUE"`` (fixed), e.g. ``{"lr": "1e-4:1e-1"}``. ``M`` and
    ``D`` are drawn uniformly from the pairs in their ranges with ``M * D <= max_batch`` (the
    paper's memory bound: 48).
    """

    def __init__(self, loss: str = "magnet", overrides: dict[str, str] | None = None, *,
                 max_batch: int = 48, requires_clusters: bool | None = None) -> None:
        if requires_clusters is None:
            from ..losses import loss_spec
            requires_clusters = loss_spec(loss).uses_index
        names = ["lr", "lr_decay", *_LOSS_PARAMS.get(loss, ()),
                 *(CLUSTER_PARAMS if requires_clusters else ())]
        self.loss, self.max_batch = loss, check_int("max_batch", max_batch, minimum=4)
        self.params = {name: DEFAULT_SPACE[name] for name in names}
        for name, text in (overrides or {}).items():
            if name not in DEFAULT_SPACE:
                raise ValueError(f"unknown search parameter space.{name}; valid: "
                                 f"{', '.join(DEFAULT_SPACE)}")
            if name not in self.params and name in OPTIONAL:
                self.params[name] = DEFAULT_SPACE[name]
            if name not in self.params:
                raise ValueError(f"space.{name} does not apply to loss {loss!r} (it tunes "
                                 f"{', '.join(self.params)}); drop the flag or change --loss")
            self.params[name] = _parse_range(name, str(text), self.params[name])
        if requires_clusters and not self._batch_pairs().size:
            m, d = self.params["clusters_per_batch"], self.params["examples_per_cluster"]
            raise ValueError(f"no (M, D) in space.clusters_per_batch {m.low:g}:{m.high:g} x "
                             f"space.examples_per_cluster {d.low:g}:{d.high:g} has M * D <= "
                             f"max_batch = {max_batch}; lower the ranges or raise max_batch")

    def sample(self, rng: np.random.Generator, num_classes: int | None = None
               ) -> dict[str, float | int]:
        """One draw: ``{config field: value}`` (plain python numbers). With ``num_classes``
        (classes in training), ``M`` is also capped so that the seed cluster has ``M - 1``
        impostor clusters: ``M <= 1 + K * (num_classes - 1)``."""
        values: dict[str, float | int] = {}
        for name, p in self.params.items():
            if name in ("clusters_per_batch", "examples_per_cluster"):
                continue
            if p.low == p.high:                       # fixed: exactly the user's value
                value = p.low
            elif p.scale == "log":
                top = math.log(p.high + 1) if p.integer else math.log(p.high)
                value = math.exp(rng.uniform(math.log(p.low), top))
            else:
                value = rng.uniform(p.low, p.high + 1 if p.integer else p.high)
            # exp(log(x)) may round past a bound by one ulp: clip
            values[p.field] = (min(int(value), int(p.high)) if p.integer
                               else float(min(max(value, p.low), p.high)))
        if "clusters_per_batch" in self.params:
            pairs = self._batch_pairs()                                        # (P, 2)
            k = values.get("index.clusters_per_class", 1)
            if num_classes is not None and (pairs[:, 0] <= 1 + k * (num_classes - 1)).any():
                pairs = pairs[pairs[:, 0] <= 1 + k * (num_classes - 1)]
            m, d = pairs[rng.integers(len(pairs))]
            values["sampler.clusters_per_batch"] = int(m)
            values["sampler.examples_per_cluster"] = int(d)
        return values

    def describe(self) -> dict:
        """The space as plain data (written to ``search.json``)."""
        return {"loss": self.loss, "max_batch": self.max_batch,
                "params": {n: dataclasses.asdict(p) | {"maximum": str(p.maximum)}
                           for n, p in self.params.items()}}

    def _batch_pairs(self) -> np.ndarray:
        m, d = self.params["clusters_per_batch"], self.params["examples_per_cluster"]
        mm, dd = np.meshgrid(np.arange(int(m.low), int(m.high) + 1),
                             np.arange(int(d.low), int(d.high) + 1), indexing="ij")
        pairs = np.stack([mm.ravel(), dd.ravel()], axis=1)
        return pairs[pairs[:, 0] * pairs[:, 1] <= self.max_batch]


def _parse_range(name: str, text: str, param: Param) -> Param:
    parts = text.split(":")
    try:
        low, high = (float(parts[0]), float(parts[-1])) if len(parts) <= 2 else (None, None)
    except ValueError:
        low = high = None
    if low is None or not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"space.{name} must be LOW:HIGH or one VALUE (numbers); got "
                         f"{text!r}; e.g. --space.{name} {param.low:g}:{param.high:g}")
    param.check_range(name, low, high)
    return dataclasses.replace(param, low=low, high=high)
