"""``torchvision-<name>``: the paper's ImageNet backbones (GoogLeNet, Inception v3, ResNet-50).

torchvision is an optional dependency (the ``pretrained`` extra) imported LAZILY inside the
factory: core code and tests never import it (its wheels must match the installed torch
build). Weights come only from a local file (``weights_path``: a state dict saved with
``torch.save(model.state_dict(), path)``, e.g. torchvision's ``*.pth`` files downloaded by
hand); nothing is fetched from a hub. The classifier (``fc``) and auxiliary heads are dropped:
the backbone returns the pooled features and the embedding head replaces the classifier
(paper §4: a 1024-d embedding after the backbone).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from .base import BACKBONES, check_image_shape

# name -> (torchvision constructor, smallest image side it accepts, feature width)
MODELS = {
    "googlenet": ("googlenet", 32, 1024),
    "inception_v3": ("inception_v3", 75, 2048),
    "resnet50": ("resnet50", 32, 2048),
}
_DROPPED = ("fc.", "AuxLogits.", "aux1.", "aux2.")


def _import_torchvision(name: str) -> Any:
    try:
        import torchvision.models  # optional and lazy by design (see module doc)
    except ImportError as error:  # also raised when a broken install fails to import
        raise ImportError(
            f"backbone 'torchvision-{name}' needs torchvision, which is not importable "
            f"({error}); install the 'pretrained' extra: pip install 'magnetdml[pretrained]' "
            "(its torchvision must match your torch build), or choose another backbone such "
            "as 'resnet'"
        ) from error
    return torchvision.models


def _load_weights(model: nn.Module, name: str, weights_path: str | os.PathLike) -> None:
    path = os.fspath(weights_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"weights_path for 'torchvision-{name}' does not exist: {path!r} "
            "(give a local state-dict file; nothing is downloaded)"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith(_DROPPED)}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(_DROPPED)]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"weights_path {path!r} does not fit 'torchvision-{name}': "
            f"missing {missing[:5]}, unexpected {result.unexpected_keys[:5]} "
            "(is it the state dict of the same architecture?)"
        )


def _factory(name: str):
    constructor, min_side, _ = MODELS[name]

    def build(
        input_shape: tuple[int, ...],
        weights_path: str | os.PathLike | None = None,
        transform_input: bool = False,
    ) -> nn.Module:
        models = _import_torchvision(name)
        check_image_shape(
            f"torchvision-{name}",
            input_shape,
            min_side=min_side,
            channels=3,
            alternative="ImageNet backbones take RGB images",
        )
        options: dict[str, Any] = {"weights": None}
        if name != "resnet50":
            # Auxiliary classifiers only matter for training from scratch with their losses;
            # transform_input re-normalises ImageNet-standardised input as Google's weights need.
            options.update(
                aux_logits=False,
                init_weights=weights_path is None,
                transform_input=bool(transform_input),
            )
        model = getattr(models, constructor)(**options)
        if weights_path is not None:
            _load_weights(model, name, weights_path)
        model.feature_dim = model.fc.in_features
        model.fc = nn.Identity()  # (B, feature_dim) pooled features, dropout kept where present
        return model

    build.__name__ = f"torchvision_{name}"
    build.__doc__ = (
        f"torchvision's {constructor} without its classifier: (B, 3, H, W) -> "
        f"(B, {MODELS[name][2]}), H, W >= {min_side}."
    )
    return build


for _name in MODELS:
    BACKBONES.register(f"torchvision-{_name}")(_factory(_name))
