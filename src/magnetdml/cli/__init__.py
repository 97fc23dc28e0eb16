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
import difflib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .._progress import scope
from .._version import __version__
from . import (
    benchmark,
    compare,
    evaluate,
    experiment,
    explore,
    predict,
    report,
    search,
    train,
)
from ._common import Command

# The subcommands in the order ``magnetdml --help`` lists them.
COMMANDS: dict[str, Command] = {
    command.name: command
    for command in (
        train.COMMAND,
        compare.COMMAND,
        evaluate.COMMAND,
        predict.EMBED,
        predict.PREDICT,
        predict.EXPORT,
        explore.RETRIEVE,
        explore.CLUSTER,
        experiment.COMMAND,
        report.COMMAND,
        search.COMMAND,
        benchmark.COMMAND,
    )
}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds ``(default: X)`` only for a meaningful argparse default: the config flags carry
    their config default in their own help, and ``None`` / ``False`` mean "not given"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or "(default:" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def build_parser(command: str | None = "all") -> argparse.ArgumentParser:
    """The parser; only ``command``'s flags are configured (``"all"``: every subcommand's,
    ``None``: none), since building them imports torch and the registries: ``magnetdml
    --help`` and ``--version`` answer without."""
    # allow_abbrev=False: "--train.epoch 3" must be an error, not silently --train.epochs.
    parser = argparse.ArgumentParser(
        prog="magnetdml",
        allow_abbrev=False,
        description="Deep metric learning with Magnet Loss "
        "(Rippel et al., ICLR 2016): train, evaluate and compare embeddings.",
    )
    parser.add_argument("--version", action="version", version=f"magnetdml {__version__}")
    parser.add_argument(
        "--quiet",
        action="store_true",
        dest="global_quiet",
        help="no progress bars or phase lines, for every command (as the command's own --quiet)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text, configure, _) in COMMANDS.items():
        subparser = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            allow_abbrev=False,
            formatter_class=_HelpFormatter,
        )
        # every command: a distinct dest, or the subcommand's default would reset the global
        subparser.add_argument(
            "--quiet",
            action="store_true",
            help="no progress bars or phase lines (waits over ~2 s show them on stderr)",
        )
        if command in ("all", name):
            configure(subparser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # the subcommand is the first word that is not an option (argparse would say the same)
    named = next((word for word in argv if not word.startswith("-")), None)
    if named is not None and named not in COMMANDS and argv and argv[0] == named:
        parser = build_parser(None)
        parser.error(
            f"unknown command {named!r}{_did_you_mean(named, COMMANDS)}; the "
            f"commands: {', '.join(COMMANDS)}"
        )
    parser = build_parser(named if named in COMMANDS else None)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        flags = [word for word in unknown if word.startswith("-")]
        options = _subcommand_options(parser, args.command)
        hint = _did_you_mean(flags[0].split("=")[0], options) if flags else ""
        parser.error(
            f"unrecognized arguments: {' '.join(unknown)}{hint}"
            + (f" (see magnetdml {args.command} --help)" if args.command else "")
        )
    if args.command is None:
        parser.print_help()
        return 2
    args.quiet = args.global_quiet or args.quiet
    try:
        with scope(not args.quiet):  # silences every bar and phase line of the command
            return COMMANDS[args.command].run(args)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
        if os.environ.get("MAGNETDML_DEBUG"):
            raise
        print(f"magnetdml {args.command}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader left (e.g. "| head"): not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as error:  # unwritable folder, full disk, ...: the file and the reason
        if os.environ.get("MAGNETDML_DEBUG"):
            raise
        where = f" ({error.filename})" if getattr(error, "filename", None) else ""
        print(
            f"magnetdml {args.command}: error: {error.strerror or error}{where}; check the "
            "path and its permissions, or the free disk space",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"magnetdml {args.command}: interrupted; {_resume_hint(args)}", file=sys.stderr)
        return 130


def _resume_hint(args: argparse.Namespace) -> str:
    """What an interrupted command left: a run folder with a checkpoint resumes."""
    out = getattr(args, "out", None)
    if args.command == "train" and out and getattr(args, "overwrite", False):
        out = Path(out)
        if (out.parent / f".{out.name}.new").is_dir():  # see training.run_swap
            return (
                f"the run that was in {out} is untouched: --overwrite replaces it only "
                "once the new run has saved its first epoch; run the command again to "
                "start over"
            )
        if (out / "checkpoint.pt").is_file():
            return (
                f"the new run's last finished epoch is saved in {out}: rerun without "
                "--overwrite to resume it (with --overwrite it starts over)"
            )
    if args.command == "train" and out and not (Path(out) / "checkpoint.pt").is_file():
        return "no epoch had finished, so nothing was saved; run the command again to start"
    if args.command == "train" and not out:
        return (
            "the last finished epoch, if any, is in the newest runs/<dataset>-<loss>-"
            "<time>/ folder; rerun with --out that folder to resume"
        )
    return "the last finished epoch is saved in the run folder and the same command resumes it"


def _did_you_mean(word: str, candidates) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def _subcommand_options(parser: argparse.ArgumentParser, command: str | None) -> list[str]:
    for action in parser._actions:  # argparse keeps its subparsers in this action
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return list(action.choices[command]._option_string_actions)
    return list(parser._option_string_actions)


__all__ = ["COMMANDS", "Command", "build_parser", "main"]
