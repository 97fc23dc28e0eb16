"""The ``magnetdml`` command line: ``train`` and the other subcommands listed below.

Every config field is a flag (``--loss.alpha 1.0``) or comes from ``--config FILE``; bad
values end in a one-line error naming the field, the rule and the value, never a traceback.

Each subcommand is a module of this package exposing ``COMMAND`` (name, help, flags, run);
this ``__init__`` lists them explicitly, in ``--help`` order, and builds the parser. The
subcommand modules import only ``cli._common`` and the layers below, never this package,
so the command line has no import circle.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import __version__
from . import compare, evaluate, experiment, report, search, train
from ._common import Command

# The subcommands in the order ``magnetdml --help`` lists them.
COMMANDS: dict[str, Command] = {module.COMMAND.name: module.COMMAND for module in
                                (train, compare, evaluate, experiment, report, search)}

class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds ``(default: X)`` only for a meaningful argparse default: the config flags carry
    their config default in their own help, and ``None`` / ``False`` mean "not given"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or "(default:" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: "--train.epoch 3" must be an error, not silently --train.epochs.
    parser = argparse.ArgumentParser(
        prog="magnetdml", allow_abbrev=False, description="Deep metric learning with Magnet Loss "
        "(Rippel et al., ICLR 2016): train, evaluate and compare embeddings.")
    parser.add_argument("--version", action="version", version=f"magnetdml {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text, configure, _) in COMMANDS.items():
        configure(sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False,
                                 formatter_class=_HelpFormatter))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command].run(args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        if os.environ.get("MAGNETDML_DEBUG"):
            raise
        print(f"magnetdml {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"magnetdml {args.command}: interrupted; the last finished epoch is saved in "
              "the run folder and the same command resumes it", file=sys.stderr)
        return 130


__all__ = ["COMMANDS", "Command", "build_parser", "main"]
