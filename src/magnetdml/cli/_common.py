"""What the subcommand modules share: the ``Command`` record, number formatting, and the
inputs of the commands that run a trained model (``RUN_DIR --images ... | --split S``).

The lowest module of the ``cli`` package: it imports nothing from it, so every subcommand can
import it without importing the package that lists them (no circle).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple


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
        raise argparse.ArgumentTypeError(
            f"must be a whole number of threads; got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (CPU threads); got {value}")
    return value


def format_percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


SPLIT_CHOICES = ("train", "val", "test", "unseen")


def add_run_dir(parser: argparse.ArgumentParser) -> None:
    """The RUN_DIR argument of the commands that use a trained run."""
    parser.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        help="a run folder written by 'magnetdml train' (holds config.json and checkpoint.pt)",
    )


def add_run_inputs(parser: argparse.ArgumentParser) -> None:
    """RUN_DIR and the inputs to run it on: ``--images PATH...``, ``--split S`` of the run's
    own data, or ``--dataset NAME --data-dir DIR`` (all of it, or its ``--split``)."""
    add_run_dir(parser)
    parser.add_argument(
        "--images",
        nargs="+",
        metavar="PATH",
        help="image files or folders of them (resized to the run's input "
        "size; grey or RGB as the run's data)",
    )
    parser.add_argument(
        "--split",
        choices=SPLIT_CHOICES,
        help="a split of the run's own data (or of --dataset's) instead",
    )
    parser.add_argument(
        "--dataset",
        help="another dataset (e.g. image-folder) to run on: all "
        "of it, or its --split; the run's own kind of data is read the run's "
        "way (an image folder's class level, input size, channels)",
    )
    parser.add_argument("--data-dir", help="folder of --dataset's files")
    parser.add_argument(
        "--data-options",
        default="",
        help="--dataset's loader options as YAML, e.g. '{class_level: leaf}'",
    )
    parser.add_argument(
        "--invert",
        choices=("auto", "yes", "no"),
        default="auto",
        help="invert the images' grey levels (auto: as the run's loader did; "
        "Omniglot's makes strokes bright)",
    )
    parser.add_argument("--threads", type=threads, default=1, help="torch CPU threads")


@dataclass
class Inputs:
    """What a command runs a trained run on: ``data`` (a dataset of model inputs), a name per
    input, and when known the inputs' ``labels`` (ids into ``class_names``) and their
    ``attributes`` (e.g. an image tree's ``parent`` folder; names in ``attribute_names``)."""

    run: Any
    data: Any
    names: list[str]
    labels: Any = None
    class_names: list[str] | None = None
    attributes: dict = field(default_factory=dict)
    attribute_names: dict = field(default_factory=dict)

    def run_labels(self):
        """``(N,)`` the inputs' labels as the run's class ids (-1: a class the run does not
        know), or ``None`` without labels."""
        import numpy as np

        if self.labels is None:
            return None
        known = {name: i for i, name in enumerate(self.run.class_names)}
        ids = np.array([known.get(name, -1) for name in self.class_names], dtype=np.int64)
        return ids[self.labels]


def load_inputs(args: argparse.Namespace) -> Inputs:
    """The :class:`Inputs` of :func:`add_run_inputs`' flags."""
    import torch

    from ..training.runs import load_run

    given = [
        flag
        for flag, value in (
            ("--images", args.images),
            ("--split", args.split),
            ("--dataset", args.dataset),
        )
        if value
    ]
    if not given:
        raise ValueError(
            "pass the inputs: --images PATH..., --split S (the run's own data) or "
            "--dataset NAME --data-dir DIR"
        )
    if args.images and len(given) > 1:
        raise ValueError(
            f"--images cannot be combined with {given[1]}: pass image files, or a "
            "split, or a dataset"
        )
    if args.data_dir and not args.dataset:
        raise ValueError("--data-dir needs --dataset NAME (e.g. --dataset image-folder)")
    if args.threads:
        torch.set_num_threads(args.threads)
    run = load_run(args.run_dir)
    if args.images:
        invert = None if args.invert == "auto" else args.invert == "yes"
        data, paths = run.read_images(args.images, invert=invert)
        return Inputs(run, data, [str(p) for p in paths])
    if args.dataset:
        from ..training.new_data import Concatenated, load_like_run

        other = load_like_run(run, args.dataset, args.data_dir, args.data_options)
        parts = (
            [getattr(other, args.split)]
            if args.split
            else [other.train, other.test, other.val, other.unseen]
        )
        if args.split and parts[0] is None:
            raise ValueError(
                f"dataset {args.dataset!r} has no {args.split} split; leave out "
                "--split to use all of it"
            )
        data = Concatenated(parts)
        return Inputs(
            run,
            data,
            data.names(args.dataset),
            data.labels,
            list(other.class_names),
            data.attributes,
            other.info.get("attribute_names", {}),
        )
    data = getattr(run.splits, args.split)
    if data is None:
        raise ValueError(
            f"run {args.run_dir!r} has no {args.split} split; choose another "
            "--split or pass --images"
        )
    return Inputs(
        run,
        data,
        [f"{args.split}[{i}]" for i in range(len(data))],
        data.labels,
        run.class_names,
        data.attributes,
        run.splits.info.get("attribute_names", {}),
    )


def add_space_arguments(group, describe) -> None:
    """One ``--space.NAME LOW:HIGH`` flag per searched parameter; ``describe(param)`` is its
    help text (``magnetdml search`` and ``magnetdml benchmark`` say what it narrows)."""
    from ..experiments.search_space import all_params

    for name, param in all_params().items():
        group.add_argument(
            f"--space.{name}", dest=f"space:{name}", metavar="LOW:HIGH", help=describe(param)
        )


def space_arguments(args) -> dict[str, str]:
    """The ``--space.NAME`` values given on the command line: ``{NAME: "LOW:HIGH"}``."""
    return {
        key[len("space:") :]: value
        for key, value in vars(args).items()
        if key.startswith("space:") and value is not None
    }
