"""The loss-config fields, their unset values, and which losses read each one.

``LossConfig``'s defaults (training/config.py) are :data:`UNSET` (a test holds them equal),
so "left at its default" and "not set" are one notion. A field a loss does not read must stay
unset: setting ``--loss.scale`` on triplet (which has no temperature) is an error that names
the losses the field applies to, never a silently ignored flag.
"""

from __future__ import annotations

import difflib
from typing import Any

from .spec import LOSSES, LossSpec

#: Every loss-config field (but ``name``) and its unset value.
UNSET: dict[str, Any] = {
    "alpha": 1.0,
    "scale": 1.0,
    "margin": None,
    "positive_margin": None,
    "triplet_variant": None,
    "miner": None,
    "impostor_fraction": None,
    "normalize": None,
    "options": "",
    "parameter_lr": None,
}
#: Fields the optimiser reads, not the loss's factory.
OPTIMISER_FIELDS = ("parameter_lr",)


def parse_loss_options(options: Any) -> dict:
    """``loss.options`` as a dict: a YAML mapping string (``"{margin: 0.1}"``) or a dict."""
    if options is None or options == "":
        return {}
    if isinstance(options, dict):
        return dict(options)
    if isinstance(options, str):
        import yaml

        try:
            parsed = yaml.safe_load(options)
        except yaml.YAMLError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
    raise ValueError(
        "loss.options must be a YAML mapping of keyword arguments, e.g. "
        f"'{{margin: 0.1, alpha: 32}}'; got {options!r}"
    )


def readers(field: str) -> list[str]:
    """The built-in losses whose factory reads ``field`` (and ``pml:*`` for ``options``)."""
    names = [n for n in LOSSES.names() if field in LOSSES.get(n).fields]
    return names + (["pml:CLASSNAME"] if field == "options" else [])


def split_loss_params(spec: LossSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``spec.factory`` out of ``params`` (loss-config fields).

    Raises ``TypeError`` for a keyword that is no loss field, and ``ValueError`` for a field
    set away from its unset value that this loss does not read."""
    chosen: dict[str, Any] = {}
    for key, value in params.items():
        if key not in UNSET:
            close = difflib.get_close_matches(key, list(UNSET), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise TypeError(
                f"loss {spec.name!r} got an unknown keyword {key!r}; {hint}"
                f"loss fields: {', '.join(UNSET)}"
            )
        if key in OPTIMISER_FIELDS:
            continue
        if key == "options":
            value = parse_loss_options(value)
        if key in spec.fields:
            chosen[key] = value
        elif value != UNSET[key] and not (key == "options" and value == {}):
            users = ", ".join(readers(key)) or "no loss"
            raise ValueError(
                f"loss.{key} does not apply to loss {spec.name!r} (it is read by "
                f"{users}); got {value!r}: drop it or choose one of those losses"
            )
    return chosen
