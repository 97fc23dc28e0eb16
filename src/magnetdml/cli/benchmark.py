"""``magnetdml benchmark``: which loss for my data -- every loss tuned alike, then scored alike.

    magnetdml benchmark --dataset digits --losses magnet,triplet,softmax --trials 20 \\
        --seeds 3 --epochs 30 --jobs 2 --out runs/benchmark-digits

For each loss: the same Optuna budget (``--trials``) on a validation split, then ``--seeds``
runs at the tuned configuration (``--epochs`` passes at most, fewer once the validation error
has not improved for ``--patience`` passes), scored on the test split under the seen-class and
the unseen-class protocols (see :mod:`magnetdml.experiments.benchmark`). Writes
``OUT/results.json``, ``OUT/report.md`` and ``OUT/report.html``. The same command again
resumes: finished trials and runs are kept. Every ``--section.field`` flag (e.g.
``--model.backbone small-cnn``) applies to every trial and run; ``--space.NAME LOW:HIGH`` (or
``VALUE``, as in ``magnetdml search``) narrows that parameter's range in the search of every
loss that tunes it (e.g. ``--space.clusters_per_class 1:3`` for Magnet and the other cluster
losses), and is refused when none of the losses does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._paths import portable_command
from ..training.config_io import add_config_arguments
from ._common import Command, add_space_arguments, space_arguments
from .experiment import flag_overrides


def configure(parser: argparse.ArgumentParser) -> None:
    from ..experiments.benchmark import DEFAULT_LOSSES, PROTOCOLS
    from ..experiments.search import PRUNERS

    group = parser.add_argument_group("benchmark options")
    group.add_argument("--dataset", required=True, help="dataset name (as --data.name)")
    group.add_argument("--data-dir", help="folder with the dataset's files (--data.data_dir)")
    group.add_argument(
        "--losses",
        default=",".join(DEFAULT_LOSSES),
        help="comma-separated loss names (default: %(default)s)",
    )
    group.add_argument(
        "--trials",
        type=int,
        default=20,
        help="Optuna trials per loss and protocol (the same for every loss)",
    )
    group.add_argument("--seeds", type=int, default=3, help="runs per loss at its tuned config")
    group.add_argument(
        "--epochs",
        type=int,
        default=30,
        help="passes at most per trial and run (patience stops earlier)",
    )
    group.add_argument(
        "--patience",
        type=int,
        default=5,
        help="stop a run once its validation error has not improved for this many passes",
    )
    group.add_argument(
        "--jobs", type=int, default=1, help="trials and runs trained at once, in worker processes"
    )
    group.add_argument("--out", help="benchmark folder (default: runs/benchmark-DATASET)")
    group.add_argument(
        "--storage",
        help="an Optuna storage URL for the studies (default: study.db in each search folder)",
    )
    group.add_argument(
        "--pruner",
        choices=PRUNERS,
        default="median",
        help="stops trials whose per-pass validation error trails the others",
    )
    group.add_argument(
        "--protocols",
        default=",".join(PROTOCOLS),
        help="comma-separated: seen (instance split), unseen (class split)",
    )
    group.add_argument(
        "--folds",
        type=int,
        default=0,
        help="unseen protocol: k-fold cross-validation over the training classes (e.g. 4, "
        "as the reality check): each trial and seed trains once per fold (default 0: one "
        "validation split)",
    )
    add_space_arguments(
        group,
        lambda p: (
            f"narrow {p.field} (or fix it: VALUE) in the search of every loss that "
            f"tunes it (default {p.low:g}:{p.high:g}, {p.source})"
        ),
    )
    add_config_arguments(parser)


def run_benchmark_command(args: argparse.Namespace) -> int:
    from ..experiments.benchmark import run_benchmark

    out = Path(args.out or f"runs/benchmark-{args.dataset}")
    command = (
        portable_command(["magnetdml", "benchmark", *sys.argv[2:]])
        if Path(sys.argv[0]).name in ("magnetdml", "__main__.py")
        else None
    )
    results = run_benchmark(
        args.dataset,
        [name.strip() for name in args.losses.split(",") if name.strip()],
        out,
        data_dir=args.data_dir,
        trials=args.trials,
        seeds=args.seeds,
        epochs=args.epochs,
        patience=args.patience,
        jobs=args.jobs,
        storage=args.storage,
        pruner=args.pruner,
        protocols=tuple(p.strip() for p in args.protocols.split(",") if p.strip()),
        overrides=flag_overrides(args),
        space=space_arguments(args),
        folds=args.folds,
        progress=not args.quiet,
        command=command,
        log=lambda message: print(message, file=sys.stderr),
    )
    for protocol, result in results["protocols"].items():
        headline = result["headline"]
        print(
            f"{protocol}: "
            + ", ".join(
                f"{name} {100 * result['losses'][name]['mean'][headline]:.2f}%"
                for name in result["ranking"]
            )
            + f" ({headline})"
        )
    print(f"report: {out / 'report.html'}")
    return 0


COMMAND = Command(
    "benchmark",
    "tune every loss alike with Optuna, train seeds at the tuned "
    "configurations, and compare them on seen and unseen classes",
    configure,
    run_benchmark_command,
)
