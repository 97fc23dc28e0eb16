"""``magnetdml compare --losses magnet,triplet,softmax --out DIR``: same budget, one report."""

from __future__ import annotations

import argparse
import os
import sys

from .._paths import portable_command
from ..training.config_io import add_config_arguments, config_from_arguments
from ._common import Command


def configure(parser: argparse.ArgumentParser) -> None:
    from ..experiments.compare import CURVE_METRICS  # torch: only for this subcommand

    parser.add_argument(
        "--losses", required=True, help="comma-separated loss names, e.g. magnet,triplet,softmax"
    )
    parser.add_argument(
        "--out",
        required=True,
        help="comparison folder: runs go to OUT/<loss>/seed<s>/, the report "
        "to OUT/results.{csv,md,json} and OUT/error_curves.png",
    )
    parser.add_argument(
        "--seeds",
        help="comma-separated seeds (default: --train.seed); "
        "the table reports mean and sample std over them",
    )
    parser.add_argument(
        "--reference",
        default="triplet",
        help="loss whose final error the markers refer to (paper Fig. 5)",
    )
    parser.add_argument(
        "--curve-metric",
        choices=CURVE_METRICS,
        default="own",
        help="test error of the curves: 'own' is kNC for cluster losses and "
        "soft kNN for the others (the paper's protocol)",
    )
    parser.add_argument("--dataset", help="dataset name (same as --data.name)")
    parser.add_argument("--data-dir", help="folder with the dataset files (--data.data_dir)")
    parser.add_argument("--epochs", help="number of epochs (same as --train.epochs)")
    parser.add_argument(
        "--overwrite", action="store_true", help="retrain finished runs instead of skipping them"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="train this many runs at once, each in its own process with "
        "cores/jobs torch threads unless --train.threads is given (default 1)",
    )
    add_config_arguments(parser)


def parse_list(name: str, text: str | None, convert=str) -> list | None:
    if text is None:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        return [convert(item) for item in items]
    except ValueError:
        raise ValueError(
            f"{name} must be a comma-separated list of {convert.__name__}; got {text!r}"
        ) from None


def _command_line() -> str | None:
    """The shell command, when this process is the ``magnetdml`` CLI (not a Python caller)."""
    program = os.path.basename(sys.argv[0])
    if program in ("magnetdml", "__main__.py"):  # paths relative: results travel
        return portable_command(["magnetdml", *sys.argv[1:]])
    return None


def run_compare(args: argparse.Namespace) -> int:
    from ..experiments.compare import compare
    from ..experiments.compare_report import report_rows
    from ..reporting.page import markdown_table

    config = config_from_arguments(
        args,
        {"data.name": args.dataset, "data.data_dir": args.data_dir, "train.epochs": args.epochs},
    )
    result = compare(
        config,
        parse_list("--losses", args.losses),
        args.out,
        seeds=parse_list("--seeds", args.seeds, int),
        reference=args.reference,
        curve_metric=args.curve_metric,
        overwrite=args.overwrite,
        progress=not args.quiet,
        jobs=args.jobs,
        command=_command_line(),
        log=lambda message: print(message, file=sys.stderr),
    )
    print(markdown_table(report_rows(result.table, args.reference)))
    print(f"report: {result.files['md']}")
    return 0


COMMAND = Command(
    "compare",
    "train several losses under the same budget and compare them "
    "(table, error curves, iterations to reach triplet's final error)",
    configure,
    run_compare,
)
