"""``magnetdml train``: train an embedding and evaluate it (default: Magnet Loss on digits)."""

from __future__ import annotations

import argparse
import os

from ..training.config_io import add_config_arguments, config_from_arguments
from ._common import Command, format_percent


def add_run_shortcuts(parser: argparse.ArgumentParser) -> None:
    """Short flags for the fields people set most, plus every ``--section.field``."""
    parser.add_argument("--dataset", help="dataset name (same as --data.name)")
    parser.add_argument("--data-dir", help="folder with the dataset files (--data.data_dir)")
    parser.add_argument("--loss", help="loss name (same as --loss.name)")
    parser.add_argument("--epochs", help="number of epochs (same as --train.epochs)")
    parser.add_argument("--out", help="run folder (default: runs/<dataset>-<loss>-<time>)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start --out over: delete its checkpoint, history and summary, "
        "finished or not (without it an unfinished run resumes and a "
        "finished one is refused)",
    )
    add_config_arguments(parser)


def config_from_run_arguments(args: argparse.Namespace):
    epochs = args.epochs if args.epochs is not None else _saved_epochs(args)
    return config_from_arguments(
        args,
        {
            "data.name": args.dataset,
            "data.data_dir": args.data_dir,
            "loss.name": args.loss,
            "train.epochs": epochs,
            "out": args.out,
        },
    )


def _saved_epochs(args: argparse.Namespace):
    """The epochs of the run already in ``--out`` when no flag or ``--config`` sets them: a
    rerun of a finished 3-epoch run must not train it on to the default 30 (a larger
    ``--epochs`` asks for that)."""
    import json
    from pathlib import Path

    import yaml

    if getattr(args, "cfg:train.epochs", None) is not None or not args.out or args.overwrite:
        return None
    if getattr(args, "config", None):
        try:
            text = Path(args.config).read_text()
            given = yaml.safe_load(text) if not args.config.endswith(".json") else json.loads(text)
        except (OSError, ValueError, yaml.YAMLError):
            return None  # the config loader names the problem
        if isinstance(given, dict) and "epochs" in (given.get("train") or {}):
            return None
    try:
        saved = json.loads((Path(args.out) / "config.json").read_text())
        return saved["train"]["epochs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_train(args: argparse.Namespace) -> int:
    from ..training import train

    config = config_from_run_arguments(args)
    result = train(config, overwrite=args.overwrite, progress=not args.quiet)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports
        return 0
    summary = result.summary
    print(
        f"kNC test error: {format_percent(summary.get('knc_error'))}   "
        f"kNN test error: {format_percent(summary.get('knn_error'))}   "
        f"({summary['dataset']}, {summary['loss']}, {summary['epochs']} epochs)"
    )
    if "unseen" in summary:
        unseen = summary["unseen"]
        print(
            f"unseen classes: NMI {unseen.get('nmi', float('nan')):.3f}   "
            f"F1 {unseen.get('f1', float('nan')):.3f}   "
            f"Recall@1 {format_percent(unseen.get('recall_at_1'))}"
        )
    print(f"run folder: {result.run_dir}")
    return 0


COMMAND = Command(
    "train",
    "train an embedding and evaluate it (default: Magnet Loss on digits)",
    add_run_shortcuts,
    run_train,
)
