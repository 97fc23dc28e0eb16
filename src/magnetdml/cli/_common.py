"""What the subcommand modules share: the ``Command`` record, number formatting, and the
inputs of the commands that run a trained model (``RUN_DIR --images ... | --split S``).

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


def threads(text: str) -> int:
    """``--threads``: a CPU thread count, 1 or more (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of threads; got {text!r}") \
            from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (CPU threads); got {value}")
    return value


def format_percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


SPLIT_CHOICES = ("train", "val", "test", "unseen")


def add_run_dir(parser: argparse.ArgumentParser) -> None:
    """The RUN_DIR argument of the commands that use a trained run."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by "
                        "'magnetdml train' (holds config.json and checkpoint.pt)")


def add_run_inputs(parser: argparse.ArgumentParser) -> None:
    """RUN_DIR and the inputs to run it on: ``--images PATH...`` or ``--split S``."""
    add_run_dir(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", nargs="+", metavar="PATH",
                        help="image files or folders of them (resized to the run's input "
                             "size; grey or RGB as the run's data)")
    source.add_argument("--split", choices=SPLIT_CHOICES,
                        help="a split of the run's own data instead")
    parser.add_argument("--invert", choices=("auto", "yes", "no"), default="auto",
                        help="invert the images' grey levels (auto: as the run's loader did; "
                             "Omniglot's makes strokes bright)")
    parser.add_argument("--threads", type=threads, default=1, help="torch CPU threads")


def load_inputs(args: argparse.Namespace):
    """``(run, dataset, names, labels or None)`` of :func:`add_run_inputs`' flags."""
    import torch

    from ..training.runs import load_run

    if args.threads:
        torch.set_num_threads(args.threads)
    run = load_run(args.run_dir)
    if args.images:
        invert = None if args.invert == "auto" else args.invert == "yes"
        data, paths = run.read_images(args.images, invert=invert)
        return run, data, [str(p) for p in paths], None
    data = getattr(run.splits, args.split)
    if data is None:
        raise ValueError(f"run {args.run_dir!r} has no {args.split} split; choose another "
                         "--split or pass --images")
    return run, data, [f"{args.split}[{i}]" for i in range(len(data))], data.labels
