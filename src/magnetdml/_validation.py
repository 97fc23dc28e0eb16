"""Validation at the public boundary (scikit-learn style).

Every check raises ``ValueError`` / ``TypeError`` whose text names the parameter, the rule, the
value received and, where there is one, the fix. Never use ``assert`` for user errors: asserts
vanish under ``python -O`` and their messages do not say what to do.
"""

from __future__ import annotations

import dataclasses
import numbers
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_int(name: str, value: Any, *, minimum: int | None = None, fix: str = "") -> int:
    """Return ``value`` as ``int`` or raise naming ``name``, the rule and the value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be an integer; got {_describe(value)} of type {type(value).__name__}"
        )
    if minimum is not None and value < minimum:
        hint = f" ({fix})" if fix else ""
        raise ValueError(f"{name} must be >= {minimum}{hint}; got {value}")
    return int(value)


def check_float(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    strict_minimum: float | None = None,
    maximum: float | None = None,
    fix: str = "",
) -> float:
    """Return ``value`` as a finite ``float`` within the bounds, or raise naming the rule."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a real number; got {_describe(value)} of type {type(value).__name__}"
        )
    value = float(value)
    hint = f" ({fix})" if fix else ""
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite{hint}; got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}{hint}; got {value}")
    if strict_minimum is not None and value <= strict_minimum:
        raise ValueError(f"{name} must be > {strict_minimum}{hint}; got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}{hint}; got {value}")
    return value


def check_choice(name: str, value: Any, choices) -> Any:
    """Raise unless ``value`` is one of ``choices``; the message lists them."""
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {valid}; got {_describe(value)}")
    return value


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a config field accepts: bounds for numbers, or a list of names (``choices``, or
    a function that returns them, so that a registry is read only when the rule is checked).
    A value of ``None`` passes (the field's type says whether ``None`` is allowed)."""

    minimum: float | None = None
    strict_minimum: float | None = None
    maximum: float | None = None
    choices: Sequence[Any] | Callable[[], Sequence[Any]] | None = None
    fix: str = ""

    def check(self, name: str, value: Any) -> Any:
        if value is None:
            return value
        if self.choices is not None:
            choices = self.choices() if callable(self.choices) else self.choices
            return check_choice(name, value, choices)
        if (
            isinstance(value, numbers.Integral)
            and not isinstance(value, bool)
            and self.strict_minimum is None
            and self.maximum is None
        ):
            return check_int(name, value, minimum=self.minimum, fix=self.fix)
        return check_float(
            name,
            value,
            minimum=self.minimum,
            strict_minimum=self.strict_minimum,
            maximum=self.maximum,
            fix=self.fix,
        )


def rule(default: Any, **constraints: Any) -> Any:
    """A dataclass field with ``default`` that carries its :class:`Rule` in its metadata:
    ``lr: float = rule(0.05, strict_minimum=0.0)``. :func:`check_rules` checks them."""
    return dataclasses.field(default=default, metadata={"rule": Rule(**constraints)})


def check_rules(instance: Any, prefix: str = "") -> None:
    """Check every field of the dataclass ``instance`` against the rule it carries; errors
    name the field as ``prefix + name``."""
    for f in dataclasses.fields(instance):
        found = f.metadata.get("rule")
        if found is not None:
            found.check(prefix + f.name, getattr(instance, f.name))


def _is_tensor(value: Any) -> bool:
    """Whether ``value`` is a torch tensor, without importing torch (a tensor exists only once
    torch is imported): the config checks load with the command line, before torch."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def as_embedding_matrix(name: str, value: Any) -> np.ndarray:
    """Return a C-contiguous float32 ``(N, D)`` numpy array of finite values, or raise.

    An input that already is one (or a CPU float32 tensor) is returned without a copy."""
    if _is_tensor(value):
        value = value.detach().cpu().float().numpy()
    array = np.asarray(value)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (N, D); got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{name} must hold numbers; got dtype {array.dtype}")
    with np.errstate(over="ignore"):  # a float64 beyond float32 becomes inf: caught
        array = np.ascontiguousarray(array, dtype=np.float32)
    # Checked with two reductions and no temporary: isfinite() or abs() would allocate an
    # (N, D) array (512 MB for a million 128-d embeddings). max / min propagate NaN and reach
    # +-inf, so the extremes are finite exactly when every value is.
    high, low = (float(array.max()), float(array.min())) if array.size else (0.0, 0.0)
    if not (np.isfinite(high) and np.isfinite(low)):
        bad = int((~np.isfinite(array)).any(axis=1).sum())
        raise ValueError(
            f"{name} must be finite; {bad} row(s) hold NaN or inf "
            "(check the learning rate or the input data)"
        )
    largest = max(high, -low)
    limit = max_embedding_value(array.shape[1])
    if largest > limit:
        raise ValueError(
            f"{name} holds values up to {largest:.3g}, but squared distances "
            f"between {array.shape[1]}-d points overflow float32 beyond "
            f"|x| = {limit:.3g}; rescale them (e.g. standardise the features), or, "
            "for a model's embeddings, lower the learning rate: the run diverged"
        )
    return array


def max_embedding_value(dim: int) -> float:
    """The largest ``|x|`` whose squared distances ``sum_d (x_d - y_d)^2`` (at most
    ``dim * (2 |x|)^2``) stay below float32's maximum, with a factor 16 to spare for sums."""
    return float(np.sqrt(np.finfo(np.float32).max / (16 * 4 * max(int(dim), 1))))


def as_label_vector(name: str, value: Any, length: int | None = None) -> np.ndarray:
    """Return an int64 ``(N,)`` numpy array, checking its length against ``length``."""
    if _is_tensor(value):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of shape (N,); got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if np.issubdtype(array.dtype, np.floating) and np.all(array == np.round(array)):
            array = array.astype(np.int64)
        else:
            raise TypeError(f"{name} must hold integers; got dtype {array.dtype}")
    if length is not None and array.shape[0] != length:
        raise ValueError(
            f"{name} must have one entry per embedding ({length}); got {array.shape[0]}"
        )
    return array.astype(np.int64, copy=False)
