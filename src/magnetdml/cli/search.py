"""``magnetdml search``: random hyperparameter search on a validation split (paper App. B).

    magnetdml search --trials 20 --dataset fashion-mnist --data-dir DATA \\
        --model.backbone small-cnn --epochs 3 --train.threads 1 --out runs/search-fm \\
        --space.lr 1e-3:3e-2 --space.clusters_per_class 1:8

Every ``magnetdml train`` flag sets the base config of all trials; ``--space.NAME LOW:HIGH``
(or ``VALUE``, to fix it) narrows one searched range. ``--data.val_fraction`` defaults to 0.1
here (trials are scored on the validation split). Running the same command again resumes:
finished trials are skipped, and a larger ``--trials`` extends the search.
"""

from __future__ import annotations

import argparse

from ..training.config_io import add_config_arguments, config_from_arguments
from ._common import Command, format_percent

DEFAULT_VAL_FRACTION = 0.1


def configure(parser: argparse.ArgumentParser) -> None:
    from ..experiments.search import METRICS  # torch: only for this subcommand
    from ..experiments.search_space import DEFAULT_SPACE

    search = parser.add_argument_group("search options")
    search.add_argument("--trials", type=int, required=True, help="number of random trials")
    search.add_argument("--out", required=True,
                        help="search folder: trials.csv, best_config.yaml, trial_NNN/ runs")
    search.add_argument("--seed", type=int, default=0, help="seeds the sampled parameters")
    search.add_argument("--metric", choices=METRICS, default=None,
                        help="validation error to minimise (default: knc_error for losses "
                             "with a cluster index, knn_error otherwise, as in the paper)")
    search.add_argument("--jobs", type=int, default=1,
                        help="trials trained at once in worker processes (each with "
                             "cores // jobs torch threads unless --train.threads is set)")
    search.add_argument("--max-batch", type=int, default=48,
                        help="largest M * D (the paper's memory bound)")
    for name, p in DEFAULT_SPACE.items():
        search.add_argument(f"--space.{name}", dest=f"space:{name}", metavar="LOW:HIGH",
                            help=f"{p.help}; {p.scale} over {p.low:g}:{p.high:g} "
                                 f"({p.field})")
    parser.add_argument("--dataset", help="dataset name (same as --data.name)")
    parser.add_argument("--data-dir", help="folder with the dataset files (--data.data_dir)")
    parser.add_argument("--loss", help="loss name (same as --loss.name)")
    parser.add_argument("--epochs", help="epochs per trial (same as --train.epochs)")
    add_config_arguments(parser)


def run_search(args: argparse.Namespace) -> int:
    from ..experiments.search import random_search
    from ..experiments.search_space import SearchSpace

    extra = {"data.name": args.dataset, "data.data_dir": args.data_dir,
             "loss.name": args.loss, "train.epochs": args.epochs}
    if getattr(args, "cfg:data.val_fraction", None) is None:   # the flag was not given
        extra["data.val_fraction"] = DEFAULT_VAL_FRACTION
    base = config_from_arguments(args, extra)
    overrides = {key[6:]: value for key, value in vars(args).items()
                 if key.startswith("space:") and value is not None}
    space = SearchSpace(base.loss.name, overrides, max_batch=args.max_batch)
    result = random_search(base, args.out, trials=args.trials, seed=args.seed, space=space,
                           metric=args.metric, jobs=args.jobs, progress=not args.quiet,
                           log=(lambda _: None) if args.quiet else print)
    best = result.best
    print(f"best of {sum(r['status'] == 'ok' for r in result.trials)} trial(s): trial "
          f"{best['trial']}   val kNC error {format_percent(best['val_knc_error'])}   "
          f"val kNN error {format_percent(best['val_knn_error'])}")
    print(f"trials: {result.out / 'trials.csv'}   best config: "
          f"{result.out / 'best_config.yaml'}")
    return 0


COMMAND = Command("search", "random hyperparameter search scored on a validation split",
                  configure, run_search)
