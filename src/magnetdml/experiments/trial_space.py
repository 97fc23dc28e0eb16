"""The space one search draws from: a loss's entry of the table in ``search_space.py`` with
the user's ``--space.NAME LOW:HIGH`` ranges (or fixed values) applied, and one trial's draw
from an Optuna trial, keeping ``M * D <= max_batch``, ``M - 1`` impostor clusters available
and clusters of two or more members."""

from __future__ import annotations

import dataclasses
import math

from .search_space import OPTIONAL, Param, all_params, space_for


class SearchSpace:
    """The hyperparameters searched for one loss, with optional user ranges.

    ``overrides`` maps a parameter name to ``"LOW:HIGH"`` (a range on the parameter's own
    scale) or ``"VALUE"`` (fixed), e.g. ``{"lr": "1e-4:1e-1"}``. ``M`` and ``D`` keep
    ``M * D <= max_batch`` (the paper's memory bound: 48).
    """

    def __init__(
        self, loss: str = "magnet", overrides: dict[str, str] | None = None, *, max_batch: int = 48
    ) -> None:
        from .._validation import check_int

        self.loss, self.max_batch = loss, check_int("max_batch", max_batch, minimum=4)
        self.params = space_for(loss)
        for name, text in (overrides or {}).items():
            if name not in all_params():
                raise ValueError(
                    f"unknown search parameter space.{name}; valid: {', '.join(all_params())}"
                )
            if name not in self.params and name in OPTIONAL:
                self.params[name] = OPTIONAL[name]
            if name not in self.params:
                raise ValueError(
                    f"space.{name} does not apply to loss {loss!r} (it tunes "
                    f"{', '.join(self.params)}); drop the flag or change --loss"
                )
            self.params[name] = _parse_range(name, str(text), self.params[name])
        if "clusters_per_batch" in self.params:
            m, d = self.params["clusters_per_batch"], self.params["examples_per_cluster"]
            if m.low * d.low > self.max_batch:
                raise ValueError(
                    f"no (M, D) in space.clusters_per_batch {m.low:g}:{m.high:g} x "
                    f"space.examples_per_cluster {d.low:g}:{d.high:g} has M * D "
                    f"<= max_batch = {self.max_batch}; lower the ranges or raise "
                    "max_batch"
                )

    def suggest(
        self, trial, num_classes: int | None = None, smallest_class: int | None = None
    ) -> dict[str, float | int]:
        """One trial's values ``{config field: value}`` drawn from the Optuna ``trial``.

        ``K`` is capped so that the smallest training class (``smallest_class`` examples)
        has clusters of two members; ``M`` so that a seed cluster has ``M - 1`` impostor
        clusters (``M <= 1 + K (num_classes - 1)``); ``D`` so that ``M * D <= max_batch``.
        These ranges then depend on the values drawn before them (Optuna's dynamic ranges)."""
        values: dict[str, float | int] = {}
        for name, p in self.params.items():
            low, high = p.low, p.high
            if name == "clusters_per_class" and smallest_class:
                high = max(low, min(high, smallest_class // 2))
            elif name == "clusters_per_batch" and num_classes:
                k = values.get("index.clusters_per_class", 1)
                high = max(low, min(high, 1 + k * (num_classes - 1)))
            elif name == "examples_per_cluster":
                m = values.get("sampler.clusters_per_batch", self.params["clusters_per_batch"].low)
                high = max(low, min(high, self.max_batch // m))
            if low == high:  # fixed: exactly the user's value
                values[p.field] = int(low) if p.integer else float(low)
            elif p.integer:
                values[p.field] = trial.suggest_int(name, int(low), int(high), log=p.log)
            else:
                values[p.field] = trial.suggest_float(name, low, high, log=p.log)
        return values

    def describe(self) -> dict:
        """The space as plain data (written to ``search.json``)."""
        return {
            "loss": self.loss,
            "max_batch": self.max_batch,
            "params": {
                n: dataclasses.asdict(p) | {"maximum": str(p.maximum)}
                for n, p in self.params.items()
            },
        }


def _parse_range(name: str, text: str, param: Param) -> Param:
    parts = text.split(":")
    try:
        low, high = (float(parts[0]), float(parts[-1])) if len(parts) <= 2 else (None, None)
    except ValueError:
        low = high = None
    if low is None or not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(
            f"space.{name} must be LOW:HIGH or one VALUE (numbers); got "
            f"{text!r}; e.g. --space.{name} {param.low:g}:{param.high:g}"
        )
    param.check_range(name, low, high)
    return dataclasses.replace(param, low=low, high=high)
