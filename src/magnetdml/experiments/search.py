"""Hyperparameter search with Optuna, scored on a validation split (paper App. B, with TPE).

The paper tunes, by random search on validation error, the learning rate, its annealing and
the loss's own parameters (which ones, over which ranges: :mod:`.search_space`). Here the
search is Optuna's seeded TPE sampler (random for its first trials, then model-based), and
every trial trains to the full budget (``train.epochs``, or fewer with ``train.patience``)
unless the pruner stops it: after every pass the trial reports its validation error (the
loss's own protocol: kNC for cluster losses, soft kNN otherwise, ``1 - MAP@R`` on a
class-disjoint split) and the pruner (``median`` or ``hyperband``; ``none``) stops trials
that trail the others at the same pass. A trial's value is the validation error of the model
it ends with (the best pass with ``train.patience``, else the last). A trial that diverges is
pruned; any other error stops the search.

Each trial is a :func:`magnetdml.training.train` run in ``out/trial_NNN`` with no plots and no
test-split scoring between passes: only what the tuner needs. The study lives in
``out/study.db`` (SQLite; ``storage`` takes any Optuna storage URL, e.g. PostgreSQL, for
several machines on one study). ``jobs`` worker processes share it; a killed search resumes
where it stopped: its unfinished trials are retried with the same values from their
checkpoints (by this folder's next search at once; on a shared ``storage``, by Optuna's
heartbeat once the dead process has been silent for ``study.GRACE_SECONDS``).

The parts: the study and its worker processes (:mod:`.study`), one trial (:mod:`.trial`), the
spaces (:mod:`.search_space`); this module runs a search and writes its tables.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from .._validation import check_choice, check_int
from ..training import Config, apply_overrides, config_to_dict
from ..training.atomic_files import write_json
from ..training.parallel import in_workers, with_threads
from .study import (
    STUDY_DB,
    finished_count,
    folder_lock,
    open_study,
    retry_unfinished,
    study_name,
    work,
)
from .trial import apply_params
from .trial_space import SearchSpace

PRUNERS = ("median", "hyperband", "none")
SEARCH_FILE = "search.json"


@dataclass(frozen=True)
class SearchResult:
    """The search folder, one row per trial, the best finished trial and its config."""

    out: Path
    trials: list[dict]
    best: dict
    best_config: Config


def search(
    base: Config,
    out: str | Path,
    *,
    trials: int,
    seed: int = 0,
    space: SearchSpace | None = None,
    jobs: int = 1,
    pruner: str = "median",
    storage: str | None = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> SearchResult:
    """Run (or resume, or extend) an Optuna search of ``trials`` finished trials of ``base``
    into ``out``, ``jobs`` trials at once in worker processes; see the module docstring.

    Writes ``out/trials.csv`` (number, state, the sampled fields, ``val_error``, ``epochs``,
    ``train_seconds``, ``seconds``) and ``out/best_config.yaml`` (the finished trial of lowest
    validation error), loadable with ``magnetdml train --config``."""
    base = base.validate()
    check_int("trials", trials, minimum=1)
    check_int("seed", seed, minimum=0)
    jobs = check_int("jobs", jobs, minimum=1, fix="the number of trials trained at once")
    check_choice("pruner", pruner, PRUNERS)
    space = space or SearchSpace(base.loss.name)
    if space.loss != base.loss.name:
        raise ValueError(
            f"the search space is for loss {space.loss!r} but the config trains "
            f"{base.loss.name!r}; build SearchSpace({base.loss.name!r})"
        )
    from ..training.setup import shared_splits

    with shared_splits():  # the check and the trials of this process load the data once
        return _search(
            base,
            out,
            trials=trials,
            seed=seed,
            space=space,
            jobs=jobs,
            pruner=pruner,
            storage=storage,
            progress=progress,
            log=log,
        )


def _search(
    base: Config,
    out: str | Path,
    *,
    trials: int,
    seed: int,
    space: SearchSpace,
    jobs: int,
    pruner: str,
    storage: str | None,
    progress: bool,
    log: Callable[[str], None],
) -> SearchResult:
    from ..training.setup import load_splits

    splits = load_splits(base)
    if splits.val is None:
        raise ValueError(
            "data.val_fraction (or data.val_classes, data.val_folds) must be > 0 for a search "
            f"(trials are scored on the validation split); got "
            f"{base.data.val_fraction}; e.g. 0.1 (or a dataset with its own "
            "validation split, e.g. omniglot val_drawers)"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # trials: no plots, no test scores, no validation beyond the tuner's (tuner_error); they
    # train the full budget, the final runs' own (train.epochs, or fewer with train.patience,
    # applied by the trial to the tuner's error); the pruner stops the hopeless ones
    base = apply_overrides(
        dataclasses.replace(base, out=None),
        {"eval.plots": False, "eval.every": 0, "eval.final": False},
    )
    if jobs > 1:  # each worker gets cores // jobs threads (unless train.threads is set)
        base = with_threads(base, jobs)
    # the space's bounds (K, M) fit the smallest training set: with class folds, any fold's
    folds = [splits]
    for k in range(1, base.data.val_folds):
        folds.append(load_splits(apply_overrides(base, {"data.val_fold": k})))
    counts = [np.bincount(fold.train.labels) for fold in folds]
    task = {
        "base": config_to_dict(base),
        "space": space,
        "seed": seed,
        "trials": trials,
        "pruner": pruner,
        "out": str(out),
        "num_classes": min(int((c > 0).sum()) for c in counts),
        "smallest_class": min(int(c[c > 0].min()) for c in counts),
        "progress": progress,
    }
    local = storage is None
    url = storage or f"sqlite:///{(out / STUDY_DB).resolve()}"
    with folder_lock(out) if local else contextlib.nullcontext():
        settings = {
            "seed": seed,
            "pruner": pruner,
            "space": space.describe(),
            "base": config_to_dict(base),
        }
        _check_search_file(out, settings)
        task["study"] = study_name(out, settings)
        study = open_study(url, task["study"], task)
        if local:  # this invocation owns the folder: its RUNNING trials are dead ones
            retry_unfinished(study)
        done = finished_count(study)
        if done >= trials:
            log(f"{done} trial(s) finished before; nothing to train")
        elif jobs == 1:
            work(url, task, 0, log)
        else:
            for _ in in_workers(
                work, [(url, task, worker, None) for worker in range(jobs)], jobs=jobs
            ):
                pass
        study = open_study(url, task["study"], task)
    return _summarise(study, base, space, out, seed)


def _summarise(study, base: Config, space: SearchSpace, out: Path, seed: int) -> SearchResult:
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False):
        if (
            t.state == TrialState.FAIL
            and "run_dir" in t.user_attrs
            and any(
                o.user_attrs.get("run_dir") == t.user_attrs["run_dir"] and o.number > t.number
                for o in study.trials
            )
        ):
            continue  # killed, then retried under a later number
        last = (
            t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else math.nan
        )
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                **t.user_attrs.get("values", {}),
                "val_error": t.value if t.value is not None else last,
                "epochs": t.user_attrs.get("epochs", len(t.intermediate_values)),
                "train_seconds": t.user_attrs.get("train_seconds"),
                "seconds": t.user_attrs.get("seconds"),
                "run_dir": t.user_attrs.get("run_dir"),
                **({"diverged": t.user_attrs["diverged"]} if "diverged" in t.user_attrs else {}),
            }
        )
    finished = [r for r in rows if r["state"] == "complete"]
    if not finished:
        raise ValueError(
            f"no trial of the search in {str(out)!r} finished (all were pruned or "
            "diverged); widen the space (e.g. a lower --space.lr) or add trials"
        )
    best = min(finished, key=lambda r: (r["val_error"], r["trial"]))
    best_trial = next(t for t in study.trials if t.number == best["trial"])
    best_params = best_trial.user_attrs["values"]
    best_config = apply_params(base, best_params)
    _write_table(out / "trials.csv", rows)
    header = (
        f"# magnetdml search: best of {len(finished)} finished trial(s) "
        f"({sum(r['state'] == 'pruned' for r in rows)} pruned) by validation error "
        f"{best['val_error']:.4f} (trial {best['trial']}, seed {seed}).\n"
        "# Train on it: magnetdml train --config best_config.yaml --out RUN.\n"
    )
    data = config_to_dict(best_config)
    data.pop("out")
    (out / "best_config.yaml").write_text(header + yaml.safe_dump(data, sort_keys=False))
    return SearchResult(out, rows, {**best, "params": best_params}, best_config)


def _check_search_file(out: Path, settings: dict) -> None:
    """Refuse to mix trials of a different search into ``out``; extending trials is fine.
    The base configs are compared through the config tree, machine fields aside (as finished
    runs are): a field added since the search ran counts at its default."""
    path = out / SEARCH_FILE
    settings = json.loads(json.dumps(settings))
    if path.exists() and _same_search(json.loads(path.read_text()), settings) is False:
        raise ValueError(
            f"search folder {str(out)!r} holds a search with other settings "
            "(base config, space, seed or pruner); choose another --out"
        )
    write_json(path, settings)


def _same_search(saved: dict, settings: dict) -> bool:
    from ..training import config_from_dict
    from ..training.run_identity import run_identity

    if not isinstance(saved, dict) or set(saved) != set(settings):
        return False
    try:
        base = run_identity(config_to_dict(config_from_dict(saved["base"])))
    except (TypeError, ValueError):
        return False
    return base == run_identity(settings["base"]) and all(
        saved[key] == settings[key] for key in settings if key != "base"
    )


def _write_table(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
