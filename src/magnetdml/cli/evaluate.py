"""``magnetdml evaluate RUN_DIR``: re-evaluate a saved run and print a table of its metrics."""

from __future__ import annotations

import argparse
import math
import sys

from ._common import Command, add_run_dir, threads


def configure(parser: argparse.ArgumentParser) -> None:
    from ..training.runs import SPLITS  # torch: only for this subcommand

    add_run_dir(parser)
    parser.add_argument("--split", choices=SPLITS, default="all",
                        help="seen-class test split, unseen classes, validation split, or "
                        "every split the run's data has")
    parser.add_argument("--metrics", help="comma-separated metric names to keep (default: "
                        "all; see magnetdml.evaluation.METRICS)")
    parser.add_argument("--device", default="cpu", help="torch device for the embedding pass")
    parser.add_argument("--threads", type=threads, default=1, help="torch CPU threads (one is "
                        "fastest on a busy machine)")
    parser.add_argument("--no-write", action="store_true",
                        help="do not write evaluation.json into the run folder")
    parser.add_argument("--dataset", help="score another dataset instead (its test split as "
                        "seen classes when its classes are the run's, all of it as unseen "
                        "classes otherwise)")
    parser.add_argument("--data-dir", help="folder of --dataset's files")
    parser.add_argument("--data-options", default="", help="--dataset's loader options as YAML, "
                        "e.g. '{evaluation: true}' (Omniglot's 20 evaluation alphabets)")
    parser.add_argument("--quiet", action="store_true",
                        help="no phases and progress bars (stderr)")


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
    return "\n".join("  ".join(cell.rjust(w) if i else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
                     for row in table)


def _format(metric: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if "error" in metric:
        return f"{100 * value:.2f}%"
    return f"{value:.4f}"


def run_evaluate(args: argparse.Namespace) -> int:
    import torch

    from ..training.runs import EVALUATION, evaluate_run, load_run, write_evaluation

    if not args.dataset and (args.data_dir or args.data_options):
        flag = "--data-dir" if args.data_dir else "--data-options"
        raise ValueError(f"{flag} needs --dataset (the name of the dataset to score, e.g. "
                         f"--dataset mnist {flag} ...); without it the run's own data is "
                         f"scored and {flag} would be ignored")
    if args.threads:
        torch.set_num_threads(args.threads)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    say = (lambda _message: None) if args.quiet else (
        lambda message: print(message, file=sys.stderr, flush=True))
    say(f"loading the run {args.run_dir}")
    run = load_run(args.run_dir, device=args.device)
    run.progress = not args.quiet
    if args.dataset:
        from ..training.runs import evaluate_on
        results = evaluate_on(run, args.dataset, args.data_dir, options=args.data_options,
                              metrics=metrics, log=say)
        print(f"{run.config.data.name}, {run.config.loss.name} run scored on {args.dataset}"
              f"{' ' + args.data_options if args.data_options else ''}:")
        print(format_table(results))
        return 0
    results = evaluate_run(run, split=args.split, metrics=metrics, write=False, log=say)
    state = "finished" if run.finished else "unfinished (last checkpoint)"
    print(f"{run.config.data.name}, {run.config.loss.name}, {run.config.model.backbone}: "
          f"epoch {run.epoch}, iteration {run.iteration}, {state}")
    print(format_table(results, run.summary if "test" in results else None))
    if not args.no_write:     # after printing: a read-only folder loses no result
        try:
            print(f"written: {write_evaluation(run, results)}")
        except OSError as error:
            print(f"magnetdml evaluate: warning: could not write {run.path / EVALUATION} "
                  f"({error.strerror}); the results above are complete (--no-write skips "
                  "this)", file=sys.stderr)
    return 0


COMMAND = Command("evaluate", "re-evaluate a saved run folder (test, unseen and val splits)",
                  configure, run_evaluate)
