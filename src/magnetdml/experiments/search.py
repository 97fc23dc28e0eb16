"""Random hyperparameter search scored on a validation split (paper Appendix B).

The paper tunes, by random search on validation error, the learning rate, its annealing and
the loss's own parameters; which ones, over which ranges, is :mod:`.search_space`.

Each trial is a :func:`magnetdml.training.train` run in ``out/trial_NNN`` (with
``data.val_fraction > 0``), then its final model is scored on the validation split by
:func:`evaluate_run`. Trial ``i`` draws its parameters from ``numpy.random.default_rng([seed,
i])``, so a search is reproducible, can be extended with more trials, and resumes by skipping
trials whose ``val_metrics.json`` exists (an interrupted trial resumes from its checkpoint).
A trial that fails (e.g. diverges) is recorded as failed and skipped on resume; if the first
three all fail, the base config is at fault and the search stops with the first error.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from .._validation import check_choice, check_int
from ..training import Config, apply_overrides, config_to_dict, train
from ..training.parallel import in_workers, with_threads
from ..training.run_dir import SUMMARY, write_json
from ..training.runs import evaluate_run
from .search_space import SearchSpace

METRICS = ("knc_error", "knn_error")
VAL_METRICS = "val_metrics.json"
SEARCH_FILE = "search.json"
FAIL_FAST = 3           # stop when this many first trials all fail


@dataclass(frozen=True)
class SearchResult:
    """The search folder, one row per finished trial, and the best trial's config."""

    out: Path
    trials: list[dict]
    best: dict
    best_config: Config


def random_search(base: Config, out: str | Path, *, trials: int, seed: int = 0,
                  space: SearchSpace | None = None, metric: str | None = None,
                  jobs: int = 1, progress: bool = False, log=print) -> SearchResult:
    """Run ``trials`` random trials of ``base`` (see the module docstring) into ``out``,
    ``jobs`` at once in worker processes (trial ``i`` is the same run whichever way).

    Writes ``out/trials.csv`` (trial, status, the sampled fields, ``val_knc_error``,
    ``val_knn_error``, ``train_seconds``, ``seconds``) and ``out/best_config.yaml`` (the trial
    with the lowest validation ``metric``: kNC error for cluster losses, soft-kNN error
    otherwise, as in the paper), loadable with ``magnetdml train --config``.
    """
    base = base.validate()
    check_int("trials", trials, minimum=1)
    check_int("seed", seed, minimum=0)
    jobs = check_int("jobs", jobs, minimum=1, fix="the number of trials trained at once")
    space = space or SearchSpace(base.loss.name)
    if space.loss != base.loss.name:
        raise ValueError(f"the search space is for loss {space.loss!r} but the config trains "
                         f"{base.loss.name!r}; build SearchSpace({base.loss.name!r})")
    metric = metric or ("knc_error" if "clusters_per_class" in space.params else "knn_error")
    check_choice("metric", metric, METRICS)
    from ..training.setup import load_splits
    splits = load_splits(base)
    if splits.val is None:
        raise ValueError("data.val_fraction must be > 0 for a search (trials are scored on the "
                         f"validation split); got {base.data.val_fraction}; e.g. 0.1 (or a "
                         "dataset with its own validation split, e.g. omniglot val_drawers)")
    out = Path(out)
    base = dataclasses.replace(base, out=None)
    _check_search_file(out, {"seed": seed, "metric": metric, "space": space.describe(),
                             "base": config_to_dict(base)})
    num_classes = len(np.unique(splits.train.labels))
    draws = [space.sample(np.random.default_rng([seed, i]), num_classes) for i in range(trials)]
    calls = [(i, apply_overrides(base, {**params, "out": str(out / f"trial_{i:03d}")}), params)
             for i, params in enumerate(draws)]
    rows: dict[int, dict] = {}
    for i, _, _ in calls:
        done = out / f"trial_{i:03d}" / VAL_METRICS
        if done.exists():
            rows[i] = json.loads(done.read_text())
            log(f"trial {i}: finished before, skipped")
    todo = [call for call in calls if call[0] not in rows]
    if jobs == 1 or len(todo) <= 1:
        finishing = ((i, _run_trial(i, config, params, progress))
                     for i, config, params in todo)
    else:   # each worker gets cores // jobs threads (unless train.threads is set)
        finishing = ((todo[position][0], row) for position, row in in_workers(
            _run_trial, [(i, with_threads(config, jobs), params) for i, config, params in todo],
            jobs=jobs))
    for i, row in finishing:
        rows[i] = row
        log(f"trial {i}: {row['status']} " + " ".join(
            f"{k}={v:.4g}" for k, v in row.items() if k.startswith("val_")))
        first = [rows.get(j) for j in range(min(trials, FAIL_FAST))]
        if all(r is not None and r["status"] != "ok" for r in first):
            # a broken base config, not unlucky draws: stop, and let a rerun retry them
            for j in range(len(first)):
                (out / f"trial_{j:03d}" / VAL_METRICS).unlink(missing_ok=True)
            raise ValueError(f"the first {len(first)} trial(s) all failed; the first: "
                             f"{first[0]['status']}")
    rows = [rows[i] for i in range(trials)]
    finished = [r for r in rows if r["status"] == "ok"]
    best = min(finished, key=lambda r: (r[f"val_{metric}"], r["trial"]))
    best_config = apply_overrides(base, {p.field: best[p.field]
                                         for p in space.params.values()})
    _write_table(out / "trials.csv", rows)
    header = (f"# magnetdml search: best of {len(finished)} trial(s) by validation {metric} "
              f"= {best[f'val_{metric}']:.4f} (trial {best['trial']}, seed {seed}).\n"
              "# Train on it: magnetdml train --config best_config.yaml --out RUN "
              "(add --data.val_fraction 0 to train on the validation split too).\n")
    data = config_to_dict(best_config)
    data.pop("out")
    (out / "best_config.yaml").write_text(header + yaml.safe_dump(data, sort_keys=False))
    return SearchResult(out, rows, best, best_config)


def _run_trial(i: int, config: Config, params: dict, progress: bool = False) -> dict:
    """Train trial ``i`` (or resume it) and score it on the validation split. Module level:
    search workers run it in other processes."""
    trial_dir = Path(config.out)
    done = trial_dir / VAL_METRICS
    started = time.perf_counter()
    row = {"trial": i, "status": "ok", **params}
    try:
        if not (trial_dir / SUMMARY).exists():
            train(config, progress=progress)
        val = evaluate_run(trial_dir, split="val", metrics=METRICS, write=False,
                           device=config.train.device)["val"]
    except (ValueError, RuntimeError, FloatingPointError) as error:   # diverged trials
        row.update({"status": f"failed: {error}".replace("\n", " "),
                    **{f"val_{m}": math.nan for m in METRICS}})
    else:
        row.update({f"val_{m}": val[m] for m in METRICS})
    summary = trial_dir / SUMMARY
    row["train_seconds"] = (json.loads(summary.read_text())["train_seconds"]
                            if summary.exists() else math.nan)
    row["seconds"] = round(time.perf_counter() - started, 3)
    write_json(done, row)
    return row


def _check_search_file(out: Path, settings: dict) -> None:
    """Refuse to mix trials of a different search into ``out``; extending trials is fine.
    The base configs are compared through the config tree, machine fields aside (as finished
    runs are): a field added since the search ran counts at its default, so a newer magnetdml
    resumes an older search."""
    path = out / SEARCH_FILE
    settings = json.loads(json.dumps(settings))
    if path.exists() and _same_search(json.loads(path.read_text()), settings) is False:
        raise ValueError(f"search folder {str(out)!r} holds a search with other settings "
                         "(base config, space, seed or metric); choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, settings)


def _same_search(saved: dict, settings: dict) -> bool:
    from ..training import config_from_dict
    from ..training.run_dir import run_identity

    if not isinstance(saved, dict) or set(saved) != set(settings):
        return False
    try:
        base = run_identity(config_to_dict(config_from_dict(saved["base"])))
    except (TypeError, ValueError):
        return False
    return base == run_identity(settings["base"]) and all(
        saved[key] == settings[key] for key in settings if key != "base")


def _write_table(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
