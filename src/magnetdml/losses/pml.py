"""pytorch-metric-learning's losses in magnetdml's loop: ``--loss pml:CLASSNAME``.

Any loss class of ``pytorch_metric_learning.losses`` is reachable by name, with its keyword
arguments from ``--loss.options "{margin: 0.1, alpha: 32}"``. Its :class:`~.spec.LossSpec` is
read off the class, not off a list of names:

- a loss whose constructor takes ``num_classes`` and ``embedding_size`` owns parameters
  (proxies or class weights: ProxyAnchor, ProxyNCA, NormalizedSoftmax, ArcFace, SoftTriple...)
  and trains, as its paper does, on uniformly shuffled batches; it is scored by its own class
  scores (``get_logits``) besides kNN;
- every other loss (MultiSimilarity, SupCon, Contrastive, NTXent...) compares pairs inside the
  batch and trains on class-balanced P x K batches, scored by kNN.

Two paper settings PML leaves to the user are filled in (each overridable in the options):
MultiSimilarityLoss mines with MultiSimilarityMiner(epsilon=0.1) (Wang et al. 2019, §4), and
ProxyAnchor's and SoftTriple's own parameters learn 100x faster than the network (Kim et al.
2020 §4.1, Qian et al. 2019 §5.1). The options key ``miner`` takes a miner class name, a
mapping ``{name: CLASSNAME, KEYWORD: VALUE...}``, or ``none``.
"""

from __future__ import annotations

import difflib
import inspect
import numbers
from typing import Any

import torch
from torch import nn

from .spec import LossSpec

PREFIX = "pml:"
#: The paper settings above: default miner and own-parameter learning-rate multiplier.
DEFAULT_MINERS = {"MultiSimilarityLoss": {"name": "MultiSimilarityMiner", "epsilon": 0.1}}
PARAMETER_LR = {"ProxyAnchorLoss": 100.0, "SoftTripleLoss": 100.0}
#: Set by the run (class count, embedding size) or by the loss's own constructor.
_RESERVED = {"num_classes", "embedding_size", "mat_based_loss", "self", "args", "kwargs"}


def _pml(module: str):
    try:
        import importlib

        return importlib.import_module(f"pytorch_metric_learning.{module}")
    except ImportError as error:  # pragma: no cover - a dependency of the package
        raise ValueError(
            "pml: losses need pytorch-metric-learning; install it with "
            "pip install 'pytorch-metric-learning>=2.3'"
        ) from error


def _find_class(kind: str, name: str, base_name: str):
    """The class ``name`` of PML's ``kind`` module (losses, miners), or a did-you-mean."""
    module = _pml(kind)
    base = getattr(module, base_name)
    found = getattr(module, name, None)
    if inspect.isclass(found) and issubclass(found, base) and found is not base:
        return found
    valid = sorted(
        n
        for n, c in vars(module).items()
        if inspect.isclass(c) and issubclass(c, base) and c is not base and not n.startswith("Base")
    )
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    singular = kind[:-1] if kind != "losses" else "loss"
    raise ValueError(
        f"pytorch-metric-learning has no {singular} {name!r}; {hint}its {kind}: {', '.join(valid)}"
    )


def keywords(cls) -> dict[str, Any]:
    """Every keyword ``cls(...)`` accepts, with its default (``inspect.Parameter.empty``
    where it has none), gathered over the constructors it passes ``**kwargs`` up to."""
    found: dict[str, Any] = {}
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None or klass in (nn.Module, object):
            continue
        for name, parameter in inspect.signature(init).parameters.items():
            if parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
                continue
            found.setdefault(name, parameter.default)
    return {k: v for k, v in found.items() if k not in _RESERVED}


def check_keywords(owner: str, cls, given: dict[str, Any]) -> dict[str, Any]:
    """Refuse unknown keywords and values whose type differs from a numeric or boolean
    default: ``ProxyAnchorLoss(alpah=32)`` would otherwise fail deep inside torch."""
    accepted = keywords(cls)
    for key, value in given.items():
        if key not in accepted:
            close = difflib.get_close_matches(str(key), list(accepted), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            reserved = " (the run sets it)" if key in ("num_classes", "embedding_size") else ""
            raise ValueError(
                f"{owner} has no keyword {key!r}{reserved}; {hint}its keywords: "
                f"{', '.join(sorted(accepted))}"
            )
        default = accepted[key]
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(
                f"{owner} keyword {key!r} must be true or false (default {default}); got {value!r}"
            )
        if (
            isinstance(default, numbers.Real)
            and not isinstance(default, bool)
            and (isinstance(value, bool) or not isinstance(value, numbers.Real))
        ):
            raise ValueError(
                f"{owner} keyword {key!r} must be a number (default {default}); got {value!r}"
            )
    return given


def _make_miner(loss_name: str, miner: Any):
    if miner is None or (isinstance(miner, str) and miner.lower() == "none"):
        return None
    if isinstance(miner, str):
        miner = {"name": miner}
    if not isinstance(miner, dict) or not isinstance(miner.get("name"), str):
        raise ValueError(
            f"loss.options miner of pml:{loss_name} must be a miner class name, "
            "{name: CLASSNAME, KEYWORD: VALUE...} or none; got " + repr(miner)
        )
    kwargs = {k: v for k, v in miner.items() if k != "name"}
    cls = _find_class("miners", miner["name"], "BaseMiner")
    return cls(**check_keywords(f"miner {miner['name']}", cls, kwargs))


class PMLLoss(nn.Module):
    """A pytorch-metric-learning loss (and its miner) as a magnetdml loss:
    ``forward(embeddings (B, E), labels (B,)) -> ()``, computed in float32 outside autocast.

    ``class_scores(embeddings) -> (B, C)``, larger for the more likely class, exists for
    losses with proxies or class weights (their ``get_logits``; a distance such as ProxyNCA's
    squared L2 is negated)."""

    def __init__(self, loss: nn.Module, miner: nn.Module | None = None) -> None:
        super().__init__()
        self.loss, self.miner = loss, miner
        distance = getattr(loss, "distance", None)
        # PML's distances mostly normalise the embeddings: such a loss trains directions only
        self.normalize = bool(getattr(distance, "normalize_embeddings", False))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            x = embeddings if embeddings.dtype == torch.float64 else embeddings.float()
            pairs = self.miner(x, labels) if self.miner is not None else None
            return self.loss(x, labels, pairs)

    def class_scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        if not hasattr(self.loss, "get_logits"):
            raise TypeError(f"{type(self.loss).__name__} has no class scores (no get_logits)")
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            logits = self.loss.get_logits(embeddings.float())  # (B, C)
        distance = getattr(self.loss, "distance", None)
        return logits if getattr(distance, "is_inverted", True) else -logits

    def extra_repr(self) -> str:
        return f"miner={type(self.miner).__name__ if self.miner is not None else None}"


def resolve(name: str) -> LossSpec:
    """The spec of ``pml:CLASSNAME`` (see the module docstring)."""
    class_name = name[len(PREFIX) :]
    cls = _find_class("losses", class_name, "BaseMetricLossFunction")
    parameters = inspect.signature(cls.__init__).parameters
    has_proxies = "num_classes" in parameters and "embedding_size" in parameters

    def factory(
        *, embedding_dim: int, num_classes: int, options: dict | None = None, **unused: object
    ) -> nn.Module:
        options = dict(options or {})
        miner = options.pop("miner", DEFAULT_MINERS.get(class_name))
        check_keywords(name, cls, options)
        sizes = {"num_classes": num_classes, "embedding_size": embedding_dim} if has_proxies else {}
        return PMLLoss(cls(**sizes, **options), _make_miner(class_name, miner))

    return LossSpec(
        name=name,
        factory=factory,
        batches="uniform" if has_proxies else "class_balanced",
        fields=("options",),
        own_scores="classifier" if has_proxies and hasattr(cls, "get_logits") else None,
        has_parameters=has_proxies,
        parameter_lr=PARAMETER_LR.get(class_name, 1.0),
        source=f"pytorch-metric-learning {cls.__module__}.{class_name}",
    )
