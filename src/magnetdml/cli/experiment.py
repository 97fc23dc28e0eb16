"""``magnetdml experiment NAME [--quick] [--out DIR] [--data-root DIR] [--section.field V]``.

Runs one of the paper's / students' experiments (:mod:`magnetdml.experiments`): trains its
runs into ``OUT/<run>/`` (a rerun skips finished runs and resumes unfinished ones), then
writes ``OUT/results.json``, ``OUT/report.md`` and the figures. Every ``--section.field``
flag is applied to every run, after the experiment's own settings (so ``--train.device cuda``
or ``--train.epochs 3`` change all runs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from .._paths import portable_command
from ..training.config_io import add_config_arguments
from ._common import Command

#: Where results go unless --out says: an untracked folder (``runs/`` is git-ignored), so that
#: running an experiment in a clone never overwrites the committed benchmarks/results/.
DEFAULT_OUT = Path("runs/experiments")
PUBLISHED = Path("benchmarks/results/experiments")


def configure(parser: argparse.ArgumentParser) -> None:
    from ..experiments import EXPERIMENTS

    parser.add_argument(
        "name", metavar="NAME", help=f"the experiment: {', '.join(EXPERIMENTS.names())}"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the few-minute version (small data, few epochs, one seed)",
    )
    parser.add_argument(
        "--out",
        help=f"experiment folder (default: {DEFAULT_OUT}/NAME, "
        "or NAME-quick with --quick; the committed results are in "
        f"{PUBLISHED}/NAME: pass that to update them)",
    )
    parser.add_argument(
        "--data-root",
        help="folder holding one folder per dataset (mnist, "
        "fashion-mnist, cifar10, omniglot), e.g. ../shared/data",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="retrain finished runs instead of skipping them"
    )
    parser.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep checkpoint.pt of finished runs (default: deleted, so the "
        "experiment folder stays small enough to commit)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="train this many runs at once, each in its own process with "
        "cores/jobs torch threads unless --train.threads is given (default 1)",
    )
    parser.add_argument(
        "--datasets",
        help="comma-separated: run only these datasets of the "
        "experiment (e.g. fashion-mnist); the others' runs are left alone",
    )
    parser.add_argument(
        "--tuned",
        metavar="DIR",
        help="for an experiment with a tuning stage (classification-tuned): "
        "take the tuned configurations of DIR/tuned.json instead of searching",
    )
    parser.add_argument(
        "--finished-only",
        action="store_true",
        help="train nothing: analyse the runs finished so far (the report lists the missing ones)",
    )
    add_config_arguments(parser)


def flag_overrides(args: argparse.Namespace) -> dict:
    """``{"section.field": value}`` from ``--config FILE`` then the flags (flags win)."""
    overrides: dict = {}
    if getattr(args, "config", None):
        path = Path(args.config)
        if not path.is_file():
            raise ValueError(f"--config file {str(path)!r} does not exist")
        data = (
            json.loads(path.read_text())
            if path.suffix == ".json"
            else yaml.safe_load(path.read_text())
        ) or {}
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise ValueError(
                f"--config file {str(path)!r} must map sections to fields, e.g. "
                "'train: {epochs: 3}'; got " + repr(data)[:80]
            )
        overrides.update(
            {
                f"{section}.{key}": value
                for section, values in data.items()
                for key, value in values.items()
            }
        )
    overrides.update(
        {
            key[4:]: value
            for key, value in vars(args).items()
            if key.startswith("cfg:") and value is not None
        }
    )
    return overrides


def run_experiment_command(args: argparse.Namespace) -> int:
    from ..experiments import EXPERIMENTS, run_experiment

    EXPERIMENTS.get(args.name)  # unknown names: the error lists the valid ones
    out = (
        Path(args.out) if args.out else DEFAULT_OUT / (args.name + ("-quick" if args.quick else ""))
    )
    # paths relative to this folder: results files hold no absolute path of the machine
    command_line = (
        portable_command(["magnetdml", *sys.argv[1:]])
        if Path(sys.argv[0]).name in ("magnetdml", "__main__.py")
        else None
    )
    results = run_experiment(
        args.name,
        out,
        quick=args.quick,
        overrides=flag_overrides(args),
        data_root=args.data_root,
        overwrite=args.overwrite,
        keep_checkpoints=args.keep_checkpoints,
        progress=not args.quiet,
        jobs=args.jobs,
        finished_only=args.finished_only,
        command=command_line,
        tuned_from=args.tuned,
        datasets=args.datasets.split(",") if args.datasets else None,
        log=lambda message: print(message, file=sys.stderr),
    )
    for claim in results.get("claims", []):
        verdict = {True: "holds", False: "does not hold", None: "n/a"}[claim.get("holds")]
        print(f"{claim['claim']}: {verdict} ({claim.get('detail', '')})")
    print(
        f"results: {out / 'results.json'}   report: {out / 'report.md'}"
        + (
            ""
            if args.out
            else f"   (the default folder; the committed results are in {PUBLISHED / out.name})"
        )
    )
    return 0


COMMAND = Command(
    "experiment",
    "run one of the paper's experiments (classification, "
    "convergence, unseen, clusters, ...) and write its report",
    configure,
    run_experiment_command,
)
