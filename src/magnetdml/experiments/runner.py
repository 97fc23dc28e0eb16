"""The experiments framework: a list of runs, trained as ordinary run folders, then analysed.

An :class:`Experiment` says which runs it needs (:meth:`Experiment.specs`, one
:class:`RunSpec` per run: config overrides on the default :class:`~magnetdml.training.Config`
plus labels for the analysis) and how to turn their outcomes into numbers and figures
(:meth:`Experiment.analyse`). :func:`run_experiment` trains every run into
``out_dir/<spec.name>/`` with :func:`magnetdml.training.train` (see :mod:`.run_stage`: a run
whose ``metrics.json`` exists is finished and skipped, an unfinished one resumes from its
checkpoint) then writes ``out_dir/results.json``, ``out_dir/report.md`` and
``out_dir/report.html`` (:func:`magnetdml.reporting.write_report`). In order:

1. the **pretraining** runs (:meth:`Experiment.pretraining`; e.g. softmax on a superset of the
   classes), whose checkpoints are kept: other runs start from them (``RunSpec.init_from``);
2. the **tuning** stage (:meth:`Experiment.tuning`, :mod:`.tuning`): one Optuna search per
   group of runs (seeded TPE, trials pruned on their per-pass validation error), whose best
   trial's fields every run of the group takes (experiments that compare losses plan their
   searches and runs with the benchmark's engine, :mod:`.benchmark_plan`);
3. the experiment's **runs**, then :meth:`Experiment.analyse` over all of them.

The results dict that ``analyse`` returns may hold these keys, which the report renders
(:func:`magnetdml.reporting.report.experiment_page`)
(everything else is kept in ``results.json`` only):

* ``"tables"``: ``[{"title": str, "rows": [dict, ...], "columns": [key, ...] (optional)}]``;
  float cells are shown with 4 significant digits, error columns are fractions;
* ``"claims"``: ``[{"claim": str, "holds": bool | None, "detail": str}]`` -- the paper's
  claims checked against the measured numbers (None: not measurable in this run);
* ``"figures"``: ``[{"title": str, "path": "name.png"}]`` with paths relative to ``out_dir``;
* ``"notes"``: ``[str, ...]`` paragraphs shown under the tables.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._paths import portable_path
from .._progress import phase
from .._validation import check_int
from ..registry import Registry
from ..reporting.experiment_page import RUN_ROW_METRICS
from ..reporting.report import write_report
from ..training.atomic_files import write_json
from ..training.machine import hardware
from ..training.run_dir import SUMMARY
from .run_stage import (  # noqa: F401  (the framework's names, importable from here)
    DATA_FOLDERS,
    DISPOSABLE,
    WARM_STARTS,
    RunOutcome,
    RunSpec,
    check_applicable,
    mean_std,
    metric,
    run_config,
    spec_loss,
    train_runs,
)
from .tuning import apply_tuned, load_tuned, tune


class Experiment:
    """Subclass per experiment and register an instance's factory in :data:`EXPERIMENTS`."""

    name: str = ""
    description: str = ""
    #: the runs' checkpoints are part of the product (final models loadable with ``magnetdml
    #: evaluate``): they are never deleted
    keeps_models: bool = False
    #: the tuning stage's ``tuned.json`` entries, set by :func:`run_experiment` before
    #: :meth:`analyse` (None: no tuning stage)
    tuned: dict | None = None

    def specs(self, quick: bool) -> list[RunSpec]:
        """The runs; ``quick`` is a version that takes a few minutes on 2 CPU cores."""
        raise NotImplementedError

    def analyse(self, out_dir: Path, runs: dict[str, RunOutcome]) -> dict:
        """Write ``results.json`` and PNG plots into ``out_dir``; return the results dict
        (keys of the module docstring). ``runs`` maps each spec's name to its outcome (the
        pretraining runs' included)."""
        raise NotImplementedError

    def pretraining(self, quick: bool) -> list[RunSpec]:
        """Runs trained before everything else, their checkpoints kept, for other runs and
        trials to start from (``RunSpec.init_from`` names one); none by default."""
        return []

    def tuning(self, quick: bool) -> list[RunSpec]:
        """The searches of the tuning stage (:mod:`.tuning`), one per group of runs that
        share a tuned configuration; none (the default): the runs train as specified."""
        return []

    def tuning_trials(self, quick: bool) -> int:
        """Optuna trials per search of the tuning stage."""
        return 0

    def tuning_space(self, spec: RunSpec) -> dict[str, str]:
        """``--space.NAME`` ranges of the search of tuning spec ``spec`` (e.g. ``{"clusters_per
        _class": "1:3"}``); none: the default space of its loss."""
        return {}


#: name -> zero-argument factory of an :class:`Experiment`.
EXPERIMENTS: Registry[Experiment] = Registry("experiment")


def save_results(out_dir: Path, results: dict) -> Path:
    """Write ``results`` to ``out_dir/results.json`` (atomically); return the path."""
    path = Path(out_dir) / "results.json"
    write_json(path, results)
    return path


def run_experiment(
    name: str,
    out_dir: str | os.PathLike,
    *,
    quick: bool = False,
    overrides: dict[str, Any] | None = None,
    data_root: str | os.PathLike | None = None,
    overwrite: bool = False,
    keep_checkpoints: bool = False,
    progress: bool = True,
    jobs: int = 1,
    finished_only: bool = False,
    command: str | None = None,
    tuned_from: str | os.PathLike | None = None,
    datasets: list[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Run experiment ``name`` (a name of :data:`EXPERIMENTS`) into ``out_dir`` and analyse it.

    ``overrides`` (``{"train.threads": 1, ...}``) apply to every run after the experiment's
    own; ``data_root`` maps each dataset to its folder (``DATA_FOLDERS``); ``jobs`` runs are
    trained at once in worker processes. ``finished_only`` trains nothing and analyses the
    runs finished so far; the results then say which are missing (``"partial"``). Returns the
    results dict, also written to ``out_dir/results.json`` with the command, hardware, run
    list, and this invocation's ``wall_seconds`` and ``runs_trained``, and rendered with its
    figures to ``out_dir/report.md`` and ``report.html``. The stages (pretraining, tuning,
    runs) are those of the module docstring; the tuning stage is skipped when ``tuned_from``
    names the folder of another experiment whose ``tuned.json`` to use.
    """
    experiment = EXPERIMENTS.get(name)()
    # relative paths (to the working folder) in every file written: results travel
    out_dir = Path(portable_path(out_dir))
    data_root = None if data_root is None else portable_path(data_root)
    tuned_from = None if tuned_from is None else portable_path(tuned_from)
    started = time.perf_counter()
    check_int("jobs", jobs, minimum=1, fix="the number of runs trained at once")
    provenance = _provenance(out_dir)  # before analyse() rewrites results.json
    specs, tuning = experiment.specs(quick), experiment.tuning(quick)
    if tuned_from is not None:  # checked before anything trains
        if not tuning:
            raise ValueError(
                f"experiment {name!r} has no tuning stage, so --tuned "
                f"{str(tuned_from)!r} would be ignored; drop --tuned"
            )
        load_tuned(tuned_from)
    pretraining = experiment.pretraining(quick)
    if datasets:
        specs, tuning = (
            _only_datasets(name, specs, datasets),
            [s for s in tuning if s.group.get("dataset") in datasets],
        )
    check_applicable(overrides, [spec_loss(s) for s in [*pretraining, *tuning, *specs]])

    def configure(spec: RunSpec, folder: Path) -> Any:
        return run_config(spec, folder, overrides=overrides, data_root=data_root, runs_dir=out_dir)

    stage = {
        "overrides": overrides,
        "data_root": data_root,
        "overwrite": overwrite,
        "progress": progress,
        "jobs": jobs,
        "finished_only": finished_only,
        "log": log,
        "runs_dir": out_dir,
    }

    def announce(number: int, what: str) -> None:  # one line per stage (not when quiet)
        phase(f"experiment {name}, stage {number}/4: {what}", progress=progress)

    # the pretrained weights are what later runs start from: they are never deleted
    if pretraining:
        announce(1, f"pretraining ({len(pretraining)} run(s))")
    pretrained = (
        train_runs(pretraining, out_dir, keep_checkpoints=True, **stage) if pretraining else {}
    )
    tuned = None
    if tuning:
        if tuned_from is not None or finished_only:
            tuned = load_tuned(tuned_from if tuned_from is not None else out_dir)
        else:
            announce(
                2, f"tuning ({len(tuning)} search(es) of {experiment.tuning_trials(quick)} trials)"
            )
            tuned = tune(
                tuning,
                out_dir,
                trials=experiment.tuning_trials(quick),
                jobs=jobs,
                progress=progress,
                keep_checkpoints=keep_checkpoints,
                log=log,
                run_config=configure,
                space_for=experiment.tuning_space,
            )
        if tuned_from is None:  # this folder's own searches (an older tuning's stay unused)
            names = {spec.name for spec in tuning}
            tuned = {name: entry for name, entry in tuned.items() if name in names}
        specs = apply_tuned(specs, tuned)
        experiment.tuned = tuned
    everything = [*pretraining, *specs]
    finished_before = {
        s.name for s in everything if not overwrite and (out_dir / s.name / SUMMARY).is_file()
    }
    # Experiments whose analysis re-embeds with each run's model keep the checkpoints until
    # analyse() has cached its measurements; then they go unless the user asked to keep them.
    needs_models = bool(getattr(experiment, "keep_checkpoints", False))
    keep = keep_checkpoints or experiment.keeps_models
    announce(
        3,
        f"{'collecting' if finished_only else 'training'} {len(specs)} run(s) "
        f"({len(finished_before)} finished before) in {out_dir}",
    )
    runs = train_runs(specs, out_dir, keep_checkpoints=keep or needs_models, **stage)
    runs = {**pretrained, **runs}
    missing = [spec.name for spec in everything if spec.name not in runs]
    if not set(runs) - set(pretrained):
        raise ValueError(
            f"no run of experiment {name!r} has finished in {str(out_dir)!r} yet; "
            "run it without finished_only (--finished-only) to train them"
        )
    announce(4, f"analysing {len(runs)} run(s)")
    analysis = experiment.analyse(out_dir, runs)
    if needs_models and not keep:
        for name_, outcome in runs.items():
            if name_ not in pretrained:
                for disposable in DISPOSABLE:
                    (outcome.run_dir / disposable).unlink(missing_ok=True)
    if not missing and not keep_checkpoints:  # every run has its warm start now
        shutil.rmtree(out_dir / WARM_STARTS, ignore_errors=True)
    first = configure(specs[0], out_dir)
    results = {
        "experiment": name,
        "description": experiment.description,
        "quick": quick,
        "command": command,
        "hardware": hardware(first),
        # this invocation only: a resumed experiment reports the part it did
        "wall_seconds": round(time.perf_counter() - started, 1),
        "runs_trained": len(set(runs) - finished_before),
        "overrides": dict(overrides or {}),
        **({"tuned": tuned, "tuned_from": str(tuned_from or out_dir)} if tuned is not None else {}),
        **(
            {"partial": {"finished": len(runs), "total": len(everything), "missing": missing}}
            if missing
            else {}
        ),
        "runs": {
            n: {
                "group": o.spec.group,
                "run_dir": str(o.run_dir),
                "overrides": o.spec.overrides,
                "iterations": o.summary.get("iterations"),
                **{m: o.summary.get(m) for m in RUN_ROW_METRICS},
            }
            for n, o in runs.items()
        },
        **analysis,
    }
    if provenance and not results["runs_trained"]:
        results.update(provenance, reanalysed_by=command)
    save_results(out_dir, results)
    write_report(out_dir)  # report.md and report.html, as `magnetdml report` renders them
    return results


#: What says how the results were measured: an invocation that trained nothing (a rerun, or
#: ``--finished-only``) re-analyses the same runs and keeps them from the one that did.
PROVENANCE = ("command", "hardware", "wall_seconds", "runs_trained", "overrides")


def _provenance(out_dir: Path) -> dict:
    """The :data:`PROVENANCE` of the results already in ``out_dir`` (none without a command)."""
    try:
        previous = json.loads((Path(out_dir) / "results.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    if not isinstance(previous, dict) or previous.get("command") is None:
        return {}
    return {key: previous[key] for key in PROVENANCE if key in previous}


def _only_datasets(name: str, specs: list[RunSpec], datasets: list[str]) -> list[RunSpec]:
    """The runs of ``datasets`` (``--datasets``), or an error naming the experiment's own."""
    kept = [s for s in specs if s.group.get("dataset") in datasets]
    if not kept:
        own = sorted({str(s.group.get("dataset")) for s in specs})
        raise ValueError(
            f"datasets {datasets} select no run of experiment {name!r}; its "
            f"datasets: {', '.join(own)}"
        )
    return kept
