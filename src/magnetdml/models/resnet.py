"""``resnet``: a residual network of basic blocks (He et al. 2016), for GPU users.

Depth 18 / 34 use the standard ``[2,2,2,2]`` / ``[3,4,6,3]`` basic-block layout (10 is the
``[1,1,1,1]`` variant, handy for quick runs); ``width`` is the first stage's channel count
(64 in the original; stages double it). The stem adapts to the input: a 3x3 stride-1 conv
for small images (CIFAR style, so 32x32 inputs are not downsampled to nothing) and the
ImageNet 7x7 stride-2 conv + max-pool for images of at least ``imagenet_stem_from`` pixels.
On 2 CPU cores ResNet-18 trains at only ~27 images/s on 32x32: use ``cifar-cnn`` there.
"""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_choice, check_int
from .base import BACKBONES, check_image_shape

LAYOUTS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


class BasicBlock(nn.Module):
    """``relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x))``; the shortcut is a strided
    1x1 conv + BN when the shape changes, else the identity."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Maps ``(B, C, H, W)`` to ``(B, 8 * width)`` (global average pooling after stage 4)."""

    def __init__(
        self, in_channels: int, depth: int = 18, width: int = 64, imagenet_stem: bool = False
    ) -> None:
        super().__init__()
        if imagenet_stem:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 7, 2, 3, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            )
        blocks: list[nn.Module] = []
        channels = width
        for stage, count in enumerate(LAYOUTS[depth]):
            out = width * 2**stage
            for i in range(count):
                blocks.append(BasicBlock(channels, out, 2 if (i == 0 and stage > 0) else 1))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        # Zero the last BN of each block so every block starts as the identity (Goyal et al.
        # 2017): deep nets then train stably from the first step.
        for block in self.blocks:
            nn.init.zeros_(block.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.blocks(self.stem(x)))  # (B, 8 * width)


@BACKBONES.register("resnet")
def resnet(
    input_shape: tuple[int, ...],
    depth: int = 18,
    width: int = 64,
    stem: str = "auto",
    imagenet_stem_from: int = 96,
) -> ResNet:
    """Factory for :class:`ResNet`. ``stem``: ``"auto"`` (ImageNet stem when the smaller image
    side is >= ``imagenet_stem_from``), ``"cifar"`` or ``"imagenet"``. Needs ``H, W >= 8``
    with the CIFAR stem (three stride-2 stages) and ``>= 32`` with the ImageNet stem."""
    check_choice("depth", depth, tuple(LAYOUTS))
    width = check_int("width", width, minimum=1, fix="the first stage's channel count")
    check_choice("stem", stem, ("auto", "cifar", "imagenet"))
    threshold = check_int("imagenet_stem_from", imagenet_stem_from, minimum=1)
    c, h, w = check_image_shape(
        "resnet", input_shape, min_side=8, alternative="use 'mlp' for feature vectors"
    )
    imagenet = stem == "imagenet" or (stem == "auto" and min(h, w) >= threshold)
    if imagenet and min(h, w) < 32:
        raise ValueError(
            f"resnet with the ImageNet stem needs images of at least 32x32 (it "
            f"downsamples 32x); got input_shape {(c, h, w)} (use stem='cifar')"
        )
    return ResNet(c, depth=depth, width=width, imagenet_stem=imagenet)
