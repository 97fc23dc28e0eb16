"""What the subcommand modules share: the ``Command`` record and number formatting.

The lowest module of the ``cli`` package: it imports nothing from it, so every subcommand can
import it without importing the package that lists them (no circle).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NamedTuple


class Command(NamedTuple):
    """One subcommand: ``configure`` adds its flags to its parser, ``run`` runs it and returns
    the exit status."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def format_percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"
