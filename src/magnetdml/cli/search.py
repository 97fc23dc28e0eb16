"""``magnetdml search``: Optuna hyperparameter search on a validation split (paper App. B).

    magnetdml search --trials 20 --dataset fashion-mnist --data-dir DATA \\
        --model.backbone small-cnn --epochs 3 --train.threads 1 --out runs/search-fm \\
        --space.lr 1e-3:3e-2 --space.clusters_per_class 1:8 --jobs 2

Every ``magnetdml train`` flag sets the base config of all trials; ``--space.NAME LOW:HIGH``
(or ``VALUE``, to fix it) narrows one searched range. ``--data.val_fraction`` defaults to 0.1
here (trials are scored on the validation split). The study is ``OUT/study.db``: running the
same command again resumes it (finished trials are kept, killed ones retried), and a larger
``--trials`` extends it. ``--storage URL`` keeps the study in any Optuna storage instead (e.g.
``postgresql://...``: several machines, each running this command, share its trials).
"""

from __future__ import annotations

import argparse

from ..training.config_io import add_config_arguments, config_from_arguments
from ._common import Command, add_space_arguments, format_percent, space_arguments

DEFAULT_VAL_FRACTION = 0.1


def configure(parser: argparse.ArgumentParser) -> None:
    from ..experiments.search import PRUNERS  # torch: only for this subcommand

    search = parser.add_argument_group("search options")
    search.add_argument(
        "--trials", type=int, required=True, help="number of trials to finish (completed or pruned)"
    )
    search.add_argument(
        "--out",
        required=True,
        help="search folder: study.db, trials.csv, best_config.yaml, trial_NNN/ runs",
    )
    search.add_argument("--seed", type=int, default=0, help="seeds the TPE sampler")
    search.add_argument(
        "--pruner",
        choices=PRUNERS,
        default="median",
        help="stops trials whose per-pass validation error trails the others "
        "(measured: benchmarks/results/search_pruners.json)",
    )
    search.add_argument(
        "--storage",
        default=None,
        help="an Optuna storage URL for the study (default: sqlite in OUT)",
    )
    search.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="trials trained at once in worker processes (each with "
        "cores // jobs torch threads unless --train.threads is set)",
    )
    search.add_argument(
        "--max-batch", type=int, default=48, help="largest M * D (the paper's memory bound)"
    )
    add_space_arguments(
        search,
        lambda p: (
            f"{p.field}, {'log' if p.log else 'linear'} over "
            f"{p.low:g}:{p.high:g} by default ({p.source})"
        ),
    )
    parser.add_argument("--dataset", help="dataset name (same as --data.name)")
    parser.add_argument("--data-dir", help="folder with the dataset files (--data.data_dir)")
    parser.add_argument("--loss", help="loss name (same as --loss.name)")
    parser.add_argument("--epochs", help="epochs per trial (same as --train.epochs)")
    add_config_arguments(parser)


def run_search(args: argparse.Namespace) -> int:
    from ..experiments.search import search
    from ..experiments.trial_space import SearchSpace

    extra = {
        "data.name": args.dataset,
        "data.data_dir": args.data_dir,
        "loss.name": args.loss,
        "train.epochs": args.epochs,
    }
    if getattr(args, "cfg:data.val_fraction", None) is None:  # the flag was not given
        extra["data.val_fraction"] = DEFAULT_VAL_FRACTION
    base = config_from_arguments(args, extra)
    space = SearchSpace(base.loss.name, space_arguments(args), max_batch=args.max_batch)
    result = search(
        base,
        args.out,
        trials=args.trials,
        seed=args.seed,
        space=space,
        jobs=args.jobs,
        pruner=args.pruner,
        storage=args.storage,
        progress=not args.quiet,
        log=(lambda _: None) if args.quiet else print,
    )
    best = result.best
    finished = sum(r["state"] == "complete" for r in result.trials)
    pruned = sum(r["state"] == "pruned" for r in result.trials)
    print(
        f"best of {finished} finished trial(s) ({pruned} pruned): trial {best['trial']}   "
        f"val error {format_percent(best['val_error'])}"
    )
    print(
        f"trials: {result.out / 'trials.csv'}   best config: "
        f"{result.out / 'best_config.yaml'}   study: {args.storage or result.out / 'study.db'}"
    )
    return 0


COMMAND = Command(
    "search", "Optuna hyperparameter search scored on a validation split", configure, run_search
)
