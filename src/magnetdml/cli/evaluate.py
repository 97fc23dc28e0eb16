"""``magnetdml evaluate RUN_DIR``: re-evaluate a saved run and print a table of its metrics."""

from __future__ import annotations

import argparse
import math
import sys

from ._common import Command, add_run_dir, threads

#: Measures of an image tree's levels (experiments.levels) that evaluate_run does not know.
LEVEL_ONLY = ("concentration_at_", "chance_concentration")
LEVEL_METRICS = ("nmi", "f1")


def configure(parser: argparse.ArgumentParser) -> None:
    from ..training.runs import SPLITS  # torch: only for this subcommand

    add_run_dir(parser)
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default="all",
        help="seen-class test split, unseen classes, validation split, or "
        "every split the run's data has",
    )
    parser.add_argument(
        "--metrics",
        help="comma-separated metric names to keep (default: "
        "all; see magnetdml.evaluation.METRICS; an image tree's levels also "
        "have concentration_at_1/4/16 and chance_concentration)",
    )
    parser.add_argument("--device", default="cpu", help="torch device for the embedding pass")
    parser.add_argument(
        "--threads",
        type=threads,
        default=1,
        help="torch CPU threads (one is fastest on a busy machine)",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="do not write evaluation.json into the run folder"
    )
    parser.add_argument(
        "--dataset",
        help="score another dataset instead (its test split as "
        "seen classes when its classes are the run's, all of it as unseen "
        "classes otherwise)",
    )
    parser.add_argument("--data-dir", help="folder of --dataset's files")
    parser.add_argument(
        "--data-options",
        default="",
        help="--dataset's loader options as YAML, "
        "e.g. '{evaluation: true}' (Omniglot's 20 evaluation alphabets)",
    )


def format_table(results: dict[str, dict], recorded: dict | None = None) -> str:
    """Metric rows x split columns (errors in percent); ``recorded`` adds the test values
    that training wrote into metrics.json, to check the run is reproduced."""
    columns = list(results)
    rows = list(dict.fromkeys(m for split in columns for m in results[split]))
    header = ["metric", *columns] + (["metrics.json"] if recorded else [])
    table = [header]
    for metric in rows:
        cells = [metric] + [_format(metric, results[s].get(metric)) for s in columns]
        if recorded:
            cells.append(_format(metric, recorded.get(metric)))
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    )


def _format(metric: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if "error" in metric:
        return f"{100 * value:.2f}%"
    return f"{value:.4f}"


def run_evaluate(args: argparse.Namespace) -> int:
    import torch

    from .._progress import phase
    from ..training.runs import EVALUATION, evaluate_run, load_run, write_evaluation

    if args.threads:
        torch.set_num_threads(args.threads)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    wanted = None if metrics is None else set(metrics)  # the tree levels' names too
    if metrics is not None:  # the levels' own measures are not evaluate_run's
        metrics = [m for m in metrics if not m.startswith(LEVEL_ONLY)]
    if not args.dataset and (args.data_dir or args.data_options):
        flag = "--data-dir" if args.data_dir else "--data-options"
        raise ValueError(
            f"{flag} needs --dataset NAME (the dataset to score, e.g. --dataset "
            f"mnist {flag} ...); without it the run's own data is scored and "
            f"{flag} would be ignored"
        )
    run = load_run(args.run_dir, device=args.device)
    if args.dataset:
        phase(f"loading {args.dataset}" + (f" from {args.data_dir}" if args.data_dir else ""))
        from ..training.new_data import Concatenated, load_like_run
        from ..training.runs import score_other

        other = load_like_run(run, args.dataset, args.data_dir, args.data_options)
        results = score_other(run, other, metrics=metrics)
        if "unseen" in results or "test" in results:  # the tree's levels, over all of it
            everything = Concatenated([other.train, other.test, other.val, other.unseen])
            results.update(_levels(run, "all", everything, other.info, wanted))
        print(
            f"{run.config.data.name}, {run.config.loss.name} run scored on {args.dataset}"
            f"{' ' + args.data_options if args.data_options else ''}:"
        )
        print(format_table(results))
        return 0
    results = evaluate_run(run, split=args.split, metrics=metrics, write=False)
    for name in [n for n in ("test", "unseen") if n in results]:
        results.update(_levels(run, name, getattr(run.splits, name), run.splits.info, wanted))
    state = "finished" if run.finished else "unfinished (last checkpoint)"
    print(
        f"{run.config.data.name}, {run.config.loss.name}, {run.config.model.backbone}: "
        f"epoch {run.epoch}, iteration {run.iteration}, {state}"
    )
    print(format_table(results, run.summary if "test" in results else None))
    if not args.no_write:  # after printing: a read-only folder loses no result
        try:
            print(f"written: {write_evaluation(run, results)}")
        except OSError as error:
            print(
                f"magnetdml evaluate: warning: could not write {run.path / EVALUATION} "
                f"({error.strerror}); the results above are complete (--no-write skips "
                "this)",
                file=sys.stderr,
            )
    return 0


def _levels(run, name: str, dataset, info: dict, wanted: set | None) -> dict[str, dict]:
    """``{"NAME/level": metrics}``: the embedding against each level of an image tree above
    the classes (:mod:`magnetdml.experiments.levels`), only the ``wanted`` metrics when given;
    empty for data without levels."""
    from ..experiments.levels import level_metrics, tree_levels

    levels = tree_levels(dataset, info)
    if not levels or (
        wanted is not None
        and not wanted & set(LEVEL_METRICS)
        and not any(m.startswith(LEVEL_ONLY) for m in wanted)
    ):
        return {}
    scores = level_metrics(run.embed(dataset), dataset.labels, levels, seed=run.config.train.seed)
    return {
        f"{name}/{level}": {m: v for m, v in values.items() if wanted is None or m in wanted}
        for level, values in scores.items()
    }


COMMAND = Command(
    "evaluate",
    "re-evaluate a saved run folder (test, unseen and val splits)",
    configure,
    run_evaluate,
)
