"""Backbones and embedding heads (layer 4).

``build_model(backbone, input_shape, embedding_dim=64, normalize=False, **options)`` returns an
:class:`EmbeddingNet` (backbone -> linear head). Backbones, by ``BACKBONES`` name:

- ``mlp``: flattens any input; ``hidden_sizes``, ``batch_norm``, ``dropout``.
- ``small-cnn``: 2 conv layers for 28x28 grey or any small HxW; ``channels``, ``hidden``,
  ``batch_norm``.
- ``cifar-cnn``: VGG-style conv + BatchNorm stages (32-64-128) for 32x32 colour images;
  ``channels``, ``convs_per_stage``.
- ``resnet``: basic-block ResNet 10/18/34, ``width``, CIFAR or ImageNet stem (for GPUs).
- ``torchvision-googlenet``, ``torchvision-inception_v3``, ``torchvision-resnet50``: the
  paper's backbones, needing the ``pretrained`` extra (imported lazily); ``weights_path``.
"""

from __future__ import annotations

from . import cnn, mlp, pretrained, resnet  # noqa: F401 - importing registers the backbones
from .base import BACKBONES
from .cnn import CifarCNN, SmallCNN
from .embedding import EmbeddingNet, build_model
from .mlp import MLP
from .resnet import ResNet

__all__ = ["BACKBONES", "MLP", "CifarCNN", "EmbeddingNet", "ResNet", "SmallCNN", "build_model"]
