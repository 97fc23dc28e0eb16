"""The experiments framework: a list of runs, trained as ordinary run folders, then analysed.

An :class:`Experiment` says which runs it needs (:meth:`Experiment.specs`, one
:class:`RunSpec` per run: config overrides on the default :class:`~magnetdml.training.Config`
plus labels for the analysis) and how to turn their outcomes into numbers and figures
(:meth:`Experiment.analyse`). :func:`run_experiment` trains every run into
``out_dir/<spec.name>/`` with :func:`magnetdml.training.train` -- a run whose ``metrics.json``
exists is finished and skipped, an unfinished one resumes from its checkpoint -- then writes
``out_dir/results.json`` and ``out_dir/report.md``.

The results dict that ``analyse`` returns may hold these keys, which the report renders
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..registry import Registry
from ..training import Config, apply_overrides, config_from_dict, config_to_dict, train_all
from ..training.machine import hardware
from ..training.run_dir import CHECKPOINT, CONFIG, HISTORY, SUMMARY, write_json
from .report_page import render_report
from .tuning import apply_tuned, load_tuned, tune

#: Dataset name -> its folder under ``--data-root`` (the layout of the shared data folder).
DATA_FOLDERS = {"mnist": "mnist", "fashion-mnist": "fashion-mnist", "cifar10": "cifar10",
                "omniglot": "omniglot"}
#: Config fields that do not change what a run computes, only where and how fast: a finished
#: run trained with other values of these is still the same run (GPU vs CPU reruns).
MACHINE_FIELDS = (("train", "threads"), ("train", "device"), ("train", "warm_start_cache"))
#: Large files of a finished run that the report does not need (checkpoint, t-SNE snapshot).
DISPOSABLE = (CHECKPOINT, "embeddings_initial.npz")
#: The experiment's shared warm starts (``train.warm_start_cache``): runs that differ only in
#: their loss load one stored warm start instead of each training it (same results, less time).
WARM_STARTS = "warm_starts"


@dataclass(frozen=True)
class RunSpec:
    """One run of an experiment: its folder name under the experiment directory (unique),
    the config overrides (``{"loss.name": "magnet", ...}``) on the default config, and the
    labels the analysis groups by (``{"loss": "magnet", "dataset": ..., "seed": 0}``)."""

    name: str
    overrides: dict[str, Any]
    group: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunOutcome:
    """A finished run: its spec, folder, ``metrics.json`` summary and ``metrics.jsonl``."""

    spec: RunSpec
    run_dir: Path
    summary: dict
    history: list[dict]


class Experiment:
    """Subclass per experiment and register an instance's factory in :data:`EXPERIMENTS`."""

    name: str = ""
    description: str = ""

    def specs(self, quick: bool) -> list[RunSpec]:
        """The runs; ``quick`` is a version that takes a few minutes on 2 CPU cores."""
        raise NotImplementedError

    def analyse(self, out_dir: Path, runs: dict[str, RunOutcome]) -> dict:
        """Write ``results.json`` and PNG plots into ``out_dir``; return the results dict
        (keys of the module docstring). ``runs`` maps each spec's name to its outcome."""
        raise NotImplementedError

    def tuning(self, quick: bool) -> list[RunSpec]:
        """The searches of the tuning stage (:mod:`.tuning`), one per group of runs that
        share a tuned configuration; none (the default): the runs train as specified."""
        return []

    def tuning_trials(self, quick: bool) -> int:
        """Random-search trials per search of the tuning stage."""
        return 0


#: name -> zero-argument factory of an :class:`Experiment`.
EXPERIMENTS: Registry[Experiment] = Registry("experiment")


def save_results(out_dir: Path, results: dict) -> Path:
    """Write ``results`` to ``out_dir/results.json`` (atomically); return the path."""
    path = Path(out_dir) / "results.json"
    write_json(path, results)
    return path


def run_config(spec: RunSpec, out_dir: Path, *, overrides: dict[str, Any] | None = None,
               data_root: str | os.PathLike | None = None) -> Config:
    """The config of one run: defaults, then the spec's overrides, then the user's
    ``overrides`` (applied to every run; they win), then ``data.data_dir`` from ``data_root``
    when no override set it, ``train.warm_start_cache = out_dir/warm_starts`` when none set it,
    and ``out = out_dir/<spec.name>``."""
    given = {**spec.overrides, **(overrides or {})}
    config = apply_overrides(Config(), given)
    if "train.warm_start_cache" not in given:
        config = apply_overrides(config, {"train.warm_start_cache":
                                          str(Path(out_dir) / WARM_STARTS)})
    if data_root is not None and config.data.data_dir is None \
            and config.data.name in DATA_FOLDERS:
        folder = Path(data_root).expanduser() / DATA_FOLDERS[config.data.name]
        config = apply_overrides(config, {"data.data_dir": str(folder)})
    return apply_overrides(config, {"out": str(Path(out_dir) / spec.name)}).validate()


def _comparable(config: dict) -> dict:
    config = json.loads(json.dumps(config))
    for section, key in MACHINE_FIELDS:
        config.get(section, {}).pop(key, None)
    config.pop("out", None)
    return config


def _finished(run_dir: Path, config: Config) -> dict | None:
    """The summary of a finished run of ``config`` in ``run_dir``, or None if unfinished."""
    if not (run_dir / SUMMARY).is_file():
        return None
    # through the config tree, so that fields added since the run was trained count at
    # their defaults (a newer magnetdml still resumes an experiment an older one finished)
    saved = config_to_dict(config_from_dict(json.loads((run_dir / CONFIG).read_text())))
    if _comparable(saved) != _comparable(config_to_dict(config)):
        raise ValueError(f"{str(run_dir)!r} holds a finished run with a different config than "
                         "this experiment asks for; pass overwrite=True (CLI: --overwrite) to "
                         "retrain it, or choose another out directory")
    return json.loads((run_dir / SUMMARY).read_text())


def _history(run_dir: Path) -> list[dict]:
    path = run_dir / HISTORY
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train_runs(specs: list[RunSpec], out_dir: Path, *, overrides: dict[str, Any] | None = None,
               data_root: str | os.PathLike | None = None, overwrite: bool = False,
               keep_checkpoints: bool = False, progress: bool = True, jobs: int = 1,
               finished_only: bool = False,
               log: Callable[[str], None] | None = None) -> dict[str, RunOutcome]:
    """Train (or skip, or resume) every spec into ``out_dir/<name>/``; see the module doc.
    ``jobs > 1`` trains that many runs at once in worker processes (runs are independent and
    seeded, so the results are the same as one at a time). ``finished_only`` trains nothing
    and returns the finished runs only. Finished runs lose their checkpoint unless
    ``keep_checkpoints`` (results stay small)."""
    log = log or (lambda _message: None)
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names) or not all(names):
        raise ValueError(f"run names must be unique and non-empty; got {names}")
    configs = [run_config(s, out_dir, overrides=overrides, data_root=data_root) for s in specs]
    todo = []
    for number, (spec, config) in enumerate(zip(specs, configs, strict=True), start=1):
        if not overwrite and _finished(Path(config.out), config) is not None:
            log(f"[{number}/{len(specs)}] {spec.name} already finished; skipped")
        elif finished_only:
            log(f"[{number}/{len(specs)}] {spec.name} not finished; left out")
        else:
            log(f"[{number}/{len(specs)}] {'training' if jobs == 1 else 'queued'} {spec.name}")
            todo.append(config)
    train_all(todo, jobs=jobs, overwrite=overwrite, progress=progress, log=log)
    outcomes = {}
    for spec, config in zip(specs, configs, strict=True):
        run_dir = Path(config.out)
        if not (run_dir / SUMMARY).is_file():
            continue                                  # finished_only: not trained yet
        summary = json.loads((run_dir / SUMMARY).read_text())
        if not keep_checkpoints:
            for name in DISPOSABLE:
                (run_dir / name).unlink(missing_ok=True)
        outcomes[spec.name] = RunOutcome(spec, run_dir, summary, _history(run_dir))
    return outcomes


def run_experiment(name: str, out_dir: str | os.PathLike, *, quick: bool = False,
                   overrides: dict[str, Any] | None = None,
                   data_root: str | os.PathLike | None = None, overwrite: bool = False,
                   keep_checkpoints: bool = False, progress: bool = True, jobs: int = 1,
                   finished_only: bool = False, command: str | None = None,
                   tuned_from: str | os.PathLike | None = None,
                   datasets: list[str] | None = None,
                   log: Callable[[str], None] | None = None) -> dict:
    """Run experiment ``name`` (a name of :data:`EXPERIMENTS`) into ``out_dir`` and analyse it.

    ``overrides`` (``{"train.threads": 1, ...}``) apply to every run after the experiment's
    own; ``data_root`` maps each dataset to its folder (``DATA_FOLDERS``); ``jobs`` runs are
    trained at once in worker processes. ``finished_only`` trains nothing and analyses the
    runs finished so far; the results then say which are missing (``"partial"``). Returns the
    results dict, also written to ``out_dir/results.json`` with the command, hardware, run
    list, and this invocation's ``wall_seconds`` and ``runs_trained``, and rendered with its
    figures to ``out_dir/report.md``. An experiment with a tuning stage first runs (or
    resumes) its searches, or takes the ``tuned.json`` of the folder ``tuned_from``, and
    trains every run with its group's tuned configuration (:mod:`.tuning`).
    """
    experiment = EXPERIMENTS.get(name)()
    out_dir = Path(out_dir)
    started = time.perf_counter()
    specs, tuning = experiment.specs(quick), experiment.tuning(quick)
    if datasets:
        specs, tuning = (_only_datasets(name, specs, datasets),
                         [s for s in tuning if s.group.get("dataset") in datasets])
    tuned = None
    if tuning:
        if tuned_from is not None or finished_only:
            tuned = load_tuned(tuned_from if tuned_from is not None else out_dir)
        else:
            tuned = tune(tuning, out_dir,
                         trials=experiment.tuning_trials(quick), jobs=jobs, progress=progress,
                         keep_checkpoints=keep_checkpoints, log=log,
                         run_config=lambda spec, folder: run_config(
                             spec, folder, overrides=overrides, data_root=data_root))
        specs = apply_tuned(specs, tuned)
    finished_before = {s.name for s in specs
                       if not overwrite and (out_dir / s.name / SUMMARY).is_file()}
    # Experiments whose analysis re-embeds with each run's model keep the checkpoints until
    # analyse() has cached its measurements; then they go unless the user asked to keep them.
    needs_models = bool(getattr(experiment, "keep_checkpoints", False))
    runs = train_runs(specs, out_dir, overrides=overrides, data_root=data_root,
                      overwrite=overwrite, keep_checkpoints=keep_checkpoints or needs_models,
                      progress=progress, jobs=jobs, finished_only=finished_only, log=log)
    missing = [spec.name for spec in specs if spec.name not in runs]
    if not runs:
        raise ValueError(f"no run of experiment {name!r} has finished in {str(out_dir)!r} yet; "
                         "run it without finished_only (--finished-only) to train them")
    analysis = experiment.analyse(out_dir, runs)
    if needs_models and not keep_checkpoints:
        for outcome in runs.values():
            for disposable in DISPOSABLE:
                (outcome.run_dir / disposable).unlink(missing_ok=True)
    if not missing and not keep_checkpoints:   # every run has its warm start now
        shutil.rmtree(out_dir / WARM_STARTS, ignore_errors=True)
    first = run_config(specs[0], out_dir, overrides=overrides, data_root=data_root)
    results = {"experiment": name, "description": experiment.description, "quick": quick,
               "command": command, "hardware": hardware(first),
               # this invocation only: a resumed experiment reports the part it did
               "wall_seconds": round(time.perf_counter() - started, 1),
               "runs_trained": len(set(runs) - finished_before),
               "overrides": dict(overrides or {}),
               **({"tuned": tuned, "tuned_from": str(tuned_from or out_dir)}
                  if tuned is not None else {}),
               **({"partial": {"finished": len(runs), "total": len(specs), "missing": missing}}
                  if missing else {}),
               "runs": {n: {"group": o.spec.group, "run_dir": str(o.run_dir),
                            "overrides": o.spec.overrides,
                            "iterations": o.summary.get("iterations"),
                            "train_seconds": o.summary.get("train_seconds")}
                        for n, o in runs.items()},
               **analysis}
    save_results(out_dir, results)
    (out_dir / "report.md").write_text(render_report(results))
    return results


def _only_datasets(name: str, specs: list[RunSpec], datasets: list[str]) -> list[RunSpec]:
    """The runs of ``datasets`` (``--datasets``), or an error naming the experiment's own."""
    kept = [s for s in specs if s.group.get("dataset") in datasets]
    if not kept:
        own = sorted({str(s.group.get("dataset")) for s in specs})
        raise ValueError(f"datasets {datasets} select no run of experiment {name!r}; its "
                         f"datasets: {', '.join(own)}")
    return kept


def metric(outcome: RunOutcome, key: str) -> float | None:
    """A number of the run's summary; dotted keys reach into sections (``"unseen.nmi"``)."""
    value: Any = outcome.summary
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return None if value is None else float(value)


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None with fewer than 2 values) of the non-None
    values; (None, None) when there are none."""
    kept = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if kept.size == 0:
        return None, None
    return float(kept.mean()), float(kept.std(ddof=1)) if kept.size > 1 else None
