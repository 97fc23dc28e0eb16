"""The backbone registry and the input-shape checks every backbone factory shares.

A backbone factory is registered in ``BACKBONES`` under its CLI name and called as
``factory(input_shape, **options)``; it validates ``input_shape`` (the shape of ONE example,
without the batch dimension: ``(C, H, W)`` for images, ``(F,)`` for feature vectors) and returns
an ``nn.Module`` mapping ``(B, *input_shape)`` to ``(B, feature_dim)`` whose integer attribute
``feature_dim`` says the width of its output. :func:`magnetdml.models.build_model` puts the
linear embedding head on top.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from torch import nn

from ..registry import Registry

BACKBONES: Registry[nn.Module] = Registry("backbone")


def check_input_shape(name: str, input_shape: Any) -> tuple[int, ...]:
    """Return ``input_shape`` as a tuple of positive ints, or raise naming the backbone."""
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        raise TypeError(
            f"input_shape must be a tuple of ints such as (1, 28, 28) or (64,) "
            f"(one example, no batch dimension); got {input_shape!r} for "
            f"backbone {name!r}"
        )
    shape = tuple(input_shape)
    if not shape or not all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in shape
    ):
        raise ValueError(
            f"input_shape must be a non-empty tuple of positive ints (one example, "
            f"no batch dimension); got {input_shape!r} for backbone {name!r}"
        )
    return tuple(int(s) for s in shape)


def check_image_shape(
    name: str,
    input_shape: Any,
    *,
    min_side: int,
    max_side: int | None = None,
    channels: int | None = None,
    alternative: str = "",
) -> tuple[int, int, int]:
    """Return ``(C, H, W)`` or raise saying what the image backbone ``name`` accepts."""
    shape = check_input_shape(name, input_shape)
    hint = f" ({alternative})" if alternative else ""
    if len(shape) != 3:
        raise ValueError(
            f"backbone {name!r} needs images: input_shape must be (C, H, W), e.g. "
            f"(1, 28, 28) for grey or (3, 32, 32) for colour; got {shape}{hint}"
        )
    c, h, w = shape
    if channels is not None and c != channels:
        raise ValueError(
            f"backbone {name!r} needs {channels}-channel images; got input_shape "
            f"{shape} with {c} channel(s){hint}"
        )
    if min(h, w) < min_side:
        raise ValueError(
            f"backbone {name!r} needs images of at least {min_side}x{min_side} "
            f"pixels; got input_shape {shape}{hint}"
        )
    if max_side is not None and max(h, w) > max_side:
        raise ValueError(
            f"backbone {name!r} takes images of at most {max_side}x{max_side} "
            f"pixels; got input_shape {shape}{hint}"
        )
    return c, h, w


def check_int_sequence(
    name: str, value: Any, *, minimum: int = 1, allow_empty: bool = False
) -> tuple[int, ...]:
    """Return ``value`` (an int or a sequence of ints, each >= ``minimum``) as a tuple."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence of ints such as (256, 128); got {value!r}")
    items = tuple(value)
    if not items and not allow_empty:
        raise ValueError(f"{name} must not be empty; got {value!r}")
    if not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= minimum for v in items
    ):
        raise ValueError(f"{name} must hold ints >= {minimum}; got {value!r}")
    return tuple(int(v) for v in items)
