"""What a loss needs, declared once: :class:`LossSpec`, and the registry of them.

Every caller that must know something about a loss (which batches it trains on, whether it
needs the cluster index, whether it has parameters of its own, how its embeddings are scored,
which config fields it reads) asks its spec, never its name. Built-in losses register a spec
here (``losses/__init__.py``); pytorch-metric-learning's losses get theirs when first named as
``pml:CLASSNAME`` (``losses/pml.py``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from torch import nn

#: Batch kinds: M clusters x D examples from the index (paper §3.2), P classes x K examples,
#: or uniformly shuffled examples.
BATCH_KINDS = ("neighbourhood", "class_balanced", "uniform")
#: How a loss's embeddings are scored besides kNN: kNC over its cluster index (paper §3.3),
#: its own class scores (a classifier or proxies), or kNN only.
OWN_SCORES = ("knc", "classifier", None)


@dataclass(frozen=True)
class LossSpec:
    """The declaration of one loss.

    Attributes:
        name: its CLI name (``magnet``, ``pml:ProxyAnchorLoss``).
        factory: ``factory(embedding_dim=E, num_classes=C, **fields) -> nn.Module``.
        batches: the batches its paper trains it on, one of :data:`BATCH_KINDS`.
            ``"neighbourhood"`` losses take ``forward(embeddings, labels, clusters)`` and
            return per-example losses; the others take ``forward(embeddings, labels)``.
        fields: the loss-config fields the factory reads (``alpha``, ``margin``...); setting
            any other is refused, so that no flag is silently ignored.
        own_scores: ``"knc"``, ``"classifier"`` or ``None`` (see :data:`OWN_SCORES`).
        has_parameters: the loss owns trainable parameters (a classifier, proxies) that the
            optimiser must update and the checkpoint must hold.
        parameter_lr: their learning rate as a multiple of ``train.lr`` unless
            ``loss.parameter_lr`` says otherwise (ProxyAnchor's and SoftTriple's papers: 100).
        source: where the loss comes from, for ``--help`` and reports.
    """

    name: str
    factory: Callable[..., nn.Module]
    batches: str
    fields: tuple[str, ...] = ()
    own_scores: str | None = None
    has_parameters: bool = False
    parameter_lr: float = 1.0
    source: str = ""

    def __post_init__(self) -> None:
        if self.batches not in BATCH_KINDS:
            raise ValueError(
                f"LossSpec {self.name!r}: batches must be one of {BATCH_KINDS}; "
                f"got {self.batches!r}"
            )
        if self.own_scores not in OWN_SCORES:
            raise ValueError(
                f"LossSpec {self.name!r}: own_scores must be one of "
                f"{OWN_SCORES}; got {self.own_scores!r}"
            )

    @property
    def uses_index(self) -> bool:
        """True for cluster losses: training keeps a cluster index and draws neighbourhoods."""
        return self.batches == "neighbourhood"

    def reads(self, field: str) -> bool:
        """Whether loss-config field ``field`` applies to this loss (``parameter_lr``: to
        losses with parameters of their own)."""
        return field in self.fields or (field == "parameter_lr" and self.has_parameters)

    @property
    def own_metric(self) -> str:
        """The error a run of this loss is judged by under its own protocol (paper §4: Magnet
        by kNC, the others by soft kNN; a loss with a classifier also reports its own)."""
        return "knc_error" if self.own_scores == "knc" else "knn_error"


class LossRegistry:
    """Loss specs by CLI name. ``pml:CLASSNAME`` names resolve through a resolver (the
    pytorch-metric-learning bridge) the first time they are asked for."""

    def __init__(self) -> None:
        self._specs: dict[str, LossSpec] = {}
        self._resolvers: dict[str, Callable[[str], LossSpec]] = {}

    def register(self, spec: LossSpec) -> LossSpec:
        if spec.name in self._specs:
            raise ValueError(f"loss {spec.name!r} is registered twice")
        self._specs[spec.name] = spec
        return spec

    def add_resolver(self, prefix: str, resolve: Callable[[str], LossSpec]) -> None:
        """``resolve("pml:X")`` makes the spec of a name that starts with ``prefix``."""
        self._resolvers[prefix] = resolve

    def get(self, name: str) -> LossSpec:
        """The spec of ``name``; an unknown name raises ``ValueError`` with a suggestion."""
        if not isinstance(name, str):
            raise TypeError(f"loss name must be a string; got {name!r}")
        if name in self._specs:
            return self._specs[name]
        for prefix, resolve in self._resolvers.items():
            if name.startswith(prefix):
                spec = resolve(name)
                self._specs[name] = spec
                return spec
        prefixes = ", ".join(f"{p}CLASSNAME" for p in self._resolvers)
        close = difflib.get_close_matches(name.lower(), self.names(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"unknown loss {name!r}; {hint}valid names: {', '.join(self.names())}"
            + (f", or {prefixes}" if prefixes else "")
        )

    def names(self) -> list[str]:
        """The built-in names (resolved ``pml:`` names are not listed)."""
        return sorted(n for n in self._specs if not any(n.startswith(p) for p in self._resolvers))

    def __contains__(self, name: object) -> bool:
        try:
            self.get(name)  # type: ignore[arg-type]
        except (ValueError, TypeError):
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


LOSSES = LossRegistry()


def loss_spec(name: str) -> LossSpec:
    """The :class:`LossSpec` of the loss called ``name`` on the command line."""
    return LOSSES.get(name)
