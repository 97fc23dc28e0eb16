"""An experiment's tuning stage (paper App. B): every loss tuned on its own before it is compared.

An experiment that defines :meth:`~magnetdml.experiments.runner.Experiment.tuning` lists one
search per group of runs (e.g. per dataset and loss): a :class:`RunSpec` whose ``overrides`` are
the base config of the trials (a validation split, the trial budget) and whose ``group`` names
the runs it tunes. Each search is an Optuna :func:`~magnetdml.experiments.search.search` into
``OUT/tuning/<name>/`` (its study in ``study.db`` there) over the loss's own
:class:`~.search_space.SearchSpace`, scored on the validation split by the loss's own protocol
(kNC for cluster losses, soft kNN otherwise); its best trial's searched fields are then set on
every run of the group. The searches resume like any search, and ``OUT/tuned.json`` records
what each group got::

    {"fashion-mnist-magnet": {"group": {"dataset": ..., "loss": ...}, "params": {field: value},
                              "val_error": 0.09, "trials": 8, "pruned": 3, ...}}

A ``tuned.json`` of another experiment folder can be given instead (``--tuned DIR``), so one
tuning serves several experiments on the same data.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..training.atomic_files import write_json

TUNED = "tuned.json"
TUNING = "tuning"
WARM_STARTS = "warm_starts"  # the trials' shared warm starts (runner.run_config's folder)
#: Files of a scored trial that its search no longer needs (the val score is stored).
TRIAL_DISPOSABLE = ("checkpoint.pt", "embeddings_initial.npz")


def tune(
    specs: list,
    out_dir: Path,
    *,
    trials: int,
    run_config: Callable,
    jobs: int = 1,
    progress: bool = False,
    keep_checkpoints: bool = False,
    space_for: Callable[[Any], dict[str, str]] | None = None,
    pruner: str = "median",
    storage_for: Callable[[Any], str | None] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, dict]:
    """Run (or resume) one search of ``trials`` trials per tuning spec into
    ``out_dir/tuning/<name>/``; write and return the ``tuned.json`` entries (with the entries
    of other groups an earlier invocation tuned, kept as they were). ``run_config``
    turns a spec into its base :class:`~magnetdml.training.Config` (the experiment's data
    root and flags applied); ``space_for(spec)`` gives the ``--space.NAME`` ranges of its
    search (default: the loss's own space); ``storage_for(spec)`` its Optuna storage URL
    (default: ``study.db`` in its folder)."""
    from .search import search
    from .trial import config_fields
    from .trial_space import SearchSpace

    log = log or (lambda _message: None)
    folder = Path(out_dir) / TUNING
    # groups tuned by an earlier invocation (e.g. another --datasets) stay in tuned.json
    tuned = load_tuned(out_dir) if (Path(out_dir) / TUNED).is_file() else {}
    for number, spec in enumerate(specs, start=1):
        if spec.name in tuned and _random_search(folder / spec.name):
            # tuned by the random search of magnetdml before Optuna: its published numbers
            # stay reproducible; delete the folder to tune the group again with Optuna
            log(
                f"[tuning {number}/{len(specs)}] {spec.name}: kept the random search's tuning "
                f"in {folder / spec.name}"
            )
            continue
        base = run_config(spec, folder)
        space = SearchSpace(base.loss.name, space_for(spec) if space_for else None)
        log(
            f"[tuning {number}/{len(specs)}] {spec.name}: {trials} trial(s) over "
            f"{', '.join(space.params)}"
        )
        started = time.perf_counter()
        result = search(
            base,
            folder / spec.name,
            trials=trials,
            seed=0,
            space=space,
            jobs=jobs,
            progress=progress,
            pruner=pruner,
            storage=storage_for(spec) if storage_for else None,
            log=lambda message, name=spec.name: log(f"  {name} {message}"),
        )
        previous = tuned.get(spec.name, {})
        tuned[spec.name] = {
            "group": spec.group,
            "params": config_fields(base, result.best["params"]),
            "val_error": result.best["val_error"],
            "best_trial": result.best["trial"],
            "trials": len(result.trials),
            "pruned": sum(r["state"] == "pruned" for r in result.trials),
            "search_seconds": round(sum(r.get("seconds") or 0.0 for r in result.trials), 1),
            "train_seconds": round(sum(r.get("train_seconds") or 0.0 for r in result.trials), 1),
            "wall_seconds": round(time.perf_counter() - started, 1),
        }
        if previous.get("trials") == len(result.trials) and "wall_seconds" in previous:
            # a rerun that found every trial finished keeps the time of the one that ran them
            tuned[spec.name]["wall_seconds"] = previous["wall_seconds"]
        if not keep_checkpoints:
            for trial in (folder / spec.name).glob("trial_*"):
                for name in TRIAL_DISPOSABLE:
                    (trial / name).unlink(missing_ok=True)
        write_json(Path(out_dir) / TUNED, tuned)  # after each search: an interrupted
        # tuning keeps the searches it finished
    if not keep_checkpoints:  # every trial is scored: nothing needs their warm starts now
        shutil.rmtree(folder / WARM_STARTS, ignore_errors=True)
    return tuned


def _random_search(folder: Path) -> bool:
    """Whether ``folder`` holds a search of the random search that Optuna replaced."""
    try:
        return "metric" in json.loads((folder / "search.json").read_text())
    except (OSError, ValueError):
        return False


def load_tuned(folder: str | os.PathLike) -> dict[str, dict]:
    """The ``tuned.json`` of an experiment folder (or the file itself)."""
    path = Path(folder)
    path = path / TUNED if path.is_dir() else path
    if not path.is_file():
        raise ValueError(
            f"--tuned {str(folder)!r} holds no {TUNED}: pass the folder of an "
            "experiment whose tuning stage has finished"
        )
    try:
        tuned = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{str(path)!r} is not valid JSON ({error.msg}, line "
            f"{error.lineno}); rerun the tuning stage to rewrite it"
        ) from error
    if not isinstance(tuned, dict) or not all(
        isinstance(v, dict) and {"group", "params"} <= set(v) for v in tuned.values()
    ):
        raise ValueError(
            f"{str(path)!r} is not a tuned.json (each entry needs 'group' and "
            "'params'); rerun the tuning stage to rewrite it"
        )
    return tuned


def apply_tuned(specs: list, tuned: dict[str, dict]) -> list:
    """Every spec with the searched fields of the tuned entry whose group it belongs to (all
    of the entry's group labels equal the spec's); the tuned values win over the spec's,
    except for the fields the spec pins (``RunSpec.pinned``)."""
    out = []
    for spec in specs:
        matches = [
            entry
            for entry in tuned.values()
            if all(spec.group.get(k) == v for k, v in entry["group"].items())
        ]
        if not matches:
            groups = sorted({json.dumps(e["group"], sort_keys=True) for e in tuned.values()})
            raise ValueError(
                f"no tuned configuration for run {spec.name!r} (group "
                f"{spec.group}); the tuning has: {', '.join(groups) or 'nothing'}"
            )
        params: dict[str, Any] = {
            k: v for entry in matches for k, v in entry["params"].items() if k not in spec.pinned
        }
        out.append(dataclasses.replace(spec, overrides={**spec.overrides, **params}))
    return out
