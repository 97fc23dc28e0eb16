"""The embedding network: a backbone followed by a linear embedding head (paper §4)."""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_int
from .base import BACKBONES, check_input_shape


class EmbeddingNet(nn.Module):
    """``r = W f(x) + b`` (optionally ``r / ||r||_2``): backbone ``f`` then a linear head.

    Shapes: ``x`` is ``(B, *input_shape)``; ``features(x)`` is ``(B, feature_dim)``;
    ``forward(x)`` is ``(B, embedding_dim)``. Magnet Loss is invariant to the global scale of
    the embedding (it divides by the batch variance), so ``normalize`` is off by default; it is
    there for the baselines that want unit-norm embeddings (e.g. triplet with a fixed margin).
    """

    def __init__(
        self,
        backbone: nn.Module,
        embedding_dim: int,
        normalize: bool = False,
        input_shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = int(backbone.feature_dim)
        self.head = nn.Linear(self.feature_dim, embedding_dim)
        self.embedding_dim = int(embedding_dim)
        self.normalize = bool(normalize)
        self.input_shape = tuple(input_shape) if input_shape is not None else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone output ``(B, feature_dim)``, before the embedding head."""
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"input must have shape (B, {', '.join(map(str, self.input_shape))})"
                f" (the input_shape this model was built for); got "
                f"{tuple(x.shape)}"
            )
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed_features(self.features(x))  # (B, embedding_dim)

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        """The head (and normalisation) on backbone features ``(B, feature_dim)``: returns
        ``(B, embedding_dim)``, so ``forward(x) = embed_features(features(x))``."""
        r = self.head(features)  # (B, embedding_dim)
        return F.normalize(r, dim=1) if self.normalize else r


def build_model(
    backbone: str,
    input_shape: tuple[int, ...],
    embedding_dim: int = 64,
    normalize: bool = False,
    *,
    seed: int | None = None,
    **backbone_options: Any,
) -> EmbeddingNet:
    """Make the backbone registered in ``BACKBONES`` as ``backbone`` for examples of shape
    ``input_shape`` (no batch dimension: ``(C, H, W)`` or ``(F,)``) and put a linear head of
    ``embedding_dim`` outputs on it. ``backbone_options`` go to the backbone factory; an
    unknown option raises a ``TypeError`` that lists the valid ones.

    ``seed``: initialise the parameters from ``torch.manual_seed(seed)`` inside a forked RNG
    (the caller's global torch RNG state is left as it was); None draws from the global RNG.
    """
    factory = BACKBONES.get(backbone)
    shape = check_input_shape(backbone, input_shape)
    dim = check_int("embedding_dim", embedding_dim, minimum=1)
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be True or False; got {normalize!r}")
    valid = [p for p in inspect.signature(factory).parameters if p != "input_shape"]
    unknown = sorted(set(backbone_options) - set(valid))
    if unknown:
        raise TypeError(
            f"backbone {backbone!r} got unknown option(s) {', '.join(unknown)}; "
            f"valid options: {', '.join(valid) or '(none)'}"
        )
    if seed is None:
        return EmbeddingNet(factory(shape, **backbone_options), dim, normalize, shape)
    seed = check_int("seed", seed, minimum=0)
    with torch.random.fork_rng(devices=[]):  # CPU init only; restores the global state
        torch.manual_seed(seed)
        return EmbeddingNet(factory(shape, **backbone_options), dim, normalize, shape)
