"""The ``magnetdml`` command line: ``train`` (and the other subcommands registered below).

Every config field is a flag (``--loss.alpha 1.0``) or comes from ``--config FILE``; bad
values end in a one-line error naming the field, the rule and the value, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from .training.config_io import add_config_arguments, config_from_arguments

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None],
                          Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help_text: str, configure: Callable[[argparse.ArgumentParser], None]):
    """Register a subcommand: ``configure`` adds its flags, the decorated function runs it."""
    def decorator(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (help_text, configure, run)
        return run
    return decorator


def add_run_shortcuts(parser: argparse.ArgumentParser) -> None:
    """Short flags for the fields people set most, plus every ``--section.field``."""
    parser.add_argument("--dataset", help="dataset name (same as --data.name)")
    parser.add_argument("--data-dir", help="folder with the dataset files (--data.data_dir)")
    parser.add_argument("--loss", help="loss name (same as --loss.name)")
    parser.add_argument("--epochs", help="number of epochs (same as --train.epochs)")
    parser.add_argument("--out", help="run folder (default: runs/<dataset>-<loss>-<time>)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a finished run in --out instead of refusing")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_arguments(parser)


def config_from_run_arguments(args: argparse.Namespace):
    return config_from_arguments(args, {"data.name": args.dataset,
                                        "data.data_dir": args.data_dir,
                                        "loss.name": args.loss, "train.epochs": args.epochs,
                                        "out": args.out})


def format_percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


@command("train", "train an embedding and evaluate it (default: Magnet Loss on digits)",
         add_run_shortcuts)
def run_train(args: argparse.Namespace) -> int:
    from .training import train

    config = config_from_run_arguments(args)
    result = train(config, overwrite=args.overwrite, progress=not args.quiet)
    if os.environ.get("RANK", "0") != "0":     # under torchrun, rank 0 reports
        return 0
    summary = result.summary
    print(f"kNC test error: {format_percent(summary.get('knc_error'))}   "
          f"kNN test error: {format_percent(summary.get('knn_error'))}   "
          f"({summary['dataset']}, {summary['loss']}, {summary['epochs']} epochs)")
    if "unseen" in summary:
        unseen = summary["unseen"]
        print(f"unseen classes: NMI {unseen.get('nmi', float('nan')):.3f}   "
              f"F1 {unseen.get('f1', float('nan')):.3f}   "
              f"Recall@1 {format_percent(unseen.get('recall_at_1'))}")
    print(f"run folder: {result.run_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: "--train.epoch 3" must be an error, not silently --train.epochs.
    parser = argparse.ArgumentParser(
        prog="magnetdml", allow_abbrev=False, description="Deep metric learning with Magnet Loss "
        "(Rippel et al., ICLR 2016): train, evaluate and compare embeddings.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, configure, _) in COMMANDS.items():
        configure(sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _import_commands()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command][2](args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        if os.environ.get("MAGNETDML_DEBUG"):
            raise
        print(f"magnetdml {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"magnetdml {args.command}: interrupted; the last finished epoch is saved in "
              "the run folder and the same command resumes it", file=sys.stderr)
        return 130


def _import_commands() -> None:
    """Subcommands that live in other modules register themselves on import."""
    from . import commands  # noqa: F401


if __name__ == "__main__":
    sys.exit(main())
