"""``mlp``: a multilayer perceptron that flattens any input (feature vectors or small images)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .._validation import check_float
from .base import BACKBONES, check_input_shape, check_int_sequence


class MLP(nn.Module):
    """``flatten -> [Linear -> (BatchNorm1d) -> ReLU -> (Dropout)] x len(hidden_sizes)``.

    Maps ``(B, *input_shape)`` to ``(B, feature_dim)`` with ``feature_dim = hidden_sizes[-1]``
    (or the flattened input size when ``hidden_sizes`` is empty: the head then sees raw input,
    a linear embedding as in classical metric learning).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        hidden_sizes: Sequence[int] = (256, 256),
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        in_features = math.prod(input_shape)
        layers: list[nn.Module] = [nn.Flatten()]
        for width in hidden_sizes:
            # The bias is redundant before BatchNorm (its shift absorbs it).
            layers.append(nn.Linear(in_features, width, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU(inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_features = width
        self.layers = nn.Sequential(*layers)
        self.feature_dim = in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, feature_dim)


@BACKBONES.register("mlp")
def mlp(
    input_shape: tuple[int, ...],
    hidden_sizes: Sequence[int] = (256, 256),
    batch_norm: bool = False,
    dropout: float = 0.0,
) -> MLP:
    """Factory for :class:`MLP`; any ``input_shape`` (it is flattened)."""
    shape = check_input_shape("mlp", input_shape)
    hidden = check_int_sequence("hidden_sizes", hidden_sizes, allow_empty=True)
    if not isinstance(batch_norm, bool):
        raise TypeError(f"batch_norm must be True or False; got {batch_norm!r}")
    rate = check_float(
        "dropout",
        dropout,
        minimum=0.0,
        maximum=0.99,
        fix="the fraction of hidden units zeroed in training",
    )
    return MLP(shape, hidden, batch_norm=batch_norm, dropout=rate)
