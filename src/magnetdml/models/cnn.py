"""Small convolutional backbones that train at a useful speed on a 2-core CPU.

``small-cnn``: two 5x5 conv layers + one hidden dense layer, for 28x28 grey images (MNIST,
Fashion-MNIST, Omniglot resized) or any small HxW (8x8 digits).
``cifar-cnn``: a VGG-style stack of 3x3 conv + BatchNorm stages (channels 32-64-128 by default)
ending in global average pooling, for 32x32 colour images. BatchNorm lets it train with a large
learning rate; global pooling keeps the head small and the backbone size-agnostic.
See ``benchmarks/backbone_throughput.py`` for measured training speed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .._validation import check_choice
from .base import BACKBONES, check_image_shape, check_int_sequence


class SmallCNN(nn.Module):
    """``[conv5x5 -> (BN) -> ReLU -> maxpool2] x len(channels) -> flatten -> dense -> ReLU``.

    Maps ``(B, C, H, W)`` to ``(B, hidden)``; each pool floors odd sizes (28 -> 14 -> 7).
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        channels: Sequence[int] = (32, 64),
        hidden: int = 256,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for out in channels:
            layers.append(nn.Conv2d(c, out, kernel_size=5, padding=2, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c, h, w = out, h // 2, w // 2
        layers += [nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(inplace=True)]
        self.layers = nn.Sequential(*layers)
        self.feature_dim = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, hidden)


#: ``cifar-cnn``'s normalisation layers. BatchNorm normalises with the statistics of the
#: batch, which Magnet's neighbourhoods make far from the data's (48 look-alike images of a few
#: classes); GroupNorm (8 groups) normalises each image on its own.
NORMS = ("batch", "group", "none")


def _norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


class CifarCNN(nn.Module):
    """VGG-style: per stage ``[conv3x3 -> norm -> ReLU] x convs_per_stage`` then ``maxpool2``
    (the last stage pools globally instead). Maps ``(B, C, H, W)`` to ``(B, channels[-1])``.
    ``norm``: one of :data:`NORMS` (BatchNorm by default).
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        channels: Sequence[int] = (32, 64, 128),
        convs_per_stage: int = 1,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        c = input_shape[0]
        layers: list[nn.Module] = []
        for stage, out in enumerate(channels):
            for _ in range(convs_per_stage):
                layers += [
                    nn.Conv2d(c, out, kernel_size=3, padding=1, bias=norm == "none"),
                    _norm_layer(norm, out),
                    nn.ReLU(inplace=True),
                ]
                c = out
            last = stage == len(channels) - 1
            layers.append(nn.AdaptiveAvgPool2d(1) if last else nn.MaxPool2d(2))
        layers.append(nn.Flatten())
        self.layers = nn.Sequential(*layers)
        self.feature_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, channels[-1])


@BACKBONES.register("small-cnn")
def small_cnn(
    input_shape: tuple[int, ...],
    channels: Sequence[int] = (32, 64),
    hidden: int = 256,
    batch_norm: bool = False,
) -> SmallCNN:
    """Factory for :class:`SmallCNN`: images ``(C, H, W)`` with ``2**len(channels) <= H, W <= 64``
    (larger images make the dense layer huge: use ``cifar-cnn`` or ``resnet``)."""
    chans = check_int_sequence("channels", channels)
    hidden = check_int_sequence("hidden", hidden)
    if len(hidden) != 1:
        raise ValueError(f"hidden must be one int (the dense layer width); got {hidden}")
    if not isinstance(batch_norm, bool):
        raise TypeError(f"batch_norm must be True or False; got {batch_norm!r}")
    shape = check_image_shape(
        "small-cnn",
        input_shape,
        min_side=2 ** len(chans),
        max_side=64,
        alternative="use 'cifar-cnn' or 'resnet' for larger images, 'mlp' for feature vectors",
    )
    return SmallCNN(shape, chans, hidden=hidden[0], batch_norm=batch_norm)


@BACKBONES.register("cifar-cnn")
def cifar_cnn(
    input_shape: tuple[int, ...],
    channels: Sequence[int] = (32, 64, 128),
    convs_per_stage: int = 1,
    norm: str = "batch",
) -> CifarCNN:
    """Factory for :class:`CifarCNN`: images ``(C, H, W)`` with ``H, W >= 2**(len(channels)-1)``
    (natural size 32x32; global pooling accepts any larger size); ``norm`` in :data:`NORMS`."""
    norm = check_choice("norm", norm, NORMS)
    chans = check_int_sequence("channels", channels)
    per_stage = check_int_sequence("convs_per_stage", convs_per_stage)
    if len(per_stage) != 1:
        raise ValueError(f"convs_per_stage must be one int; got {convs_per_stage!r}")
    shape = check_image_shape(
        "cifar-cnn",
        input_shape,
        min_side=2 ** (len(chans) - 1),
        alternative="use 'mlp' for feature vectors",
    )
    return CifarCNN(shape, chans, convs_per_stage=per_stage[0], norm=norm)
