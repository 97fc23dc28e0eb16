"""An experiment's runs: their specs, configs, and training them as ordinary run folders.

A :class:`RunSpec` names one run (its folder under the experiment directory), its config
overrides and the labels its analysis groups by; :func:`run_config` turns it into the run's
:class:`~magnetdml.training.Config`; :func:`train_runs` trains (or skips, or resumes) a list of
them, in worker processes with ``jobs > 1``, and returns each finished run's
:class:`RunOutcome`. A run whose ``metrics.json`` exists is finished and skipped when its config
is the one asked for (machine fields aside), refused when it is not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..losses import loss_spec
from ..training import Config, apply_overrides, config_from_dict, config_to_dict, train_all
from ..training.run_dir import CHECKPOINT, CONFIG, SUMMARY, RunDir
from ..training.run_identity import extends, run_identity
from ..training.setup import pin_data_options

#: Dataset name -> its folder under ``--data-root`` (the layout of the shared data folder).
DATA_FOLDERS = {
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist",
    "cifar10": "cifar10",
    "omniglot": "omniglot",
}
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
    #: the name of another run of the experiment (one of its pretraining runs) whose final
    #: weights this run starts from (``model.init_from``)
    init_from: str | None = None
    #: config fields of ``overrides`` that a tuned configuration must not replace
    pinned: tuple[str, ...] = ()


@dataclass
class RunOutcome:
    """A finished run: its spec, folder, ``metrics.json`` summary and ``metrics.jsonl``."""

    spec: RunSpec
    run_dir: Path
    summary: dict
    history: list[dict]


def spec_loss(spec: RunSpec) -> str:
    """The loss a run spec trains (the config's default unless it names one)."""
    return spec.overrides.get("loss.name", Config().loss.name)


def applicable(overrides: dict[str, Any], loss: str) -> dict[str, Any]:
    """The user's ``overrides`` for one run of ``loss``: a loss field applies to the runs
    whose loss reads it (``--loss.alpha 2`` on an experiment of Magnet, softmax and triplet
    sets Magnet's margin), every other field to every run. See :func:`check_applicable`."""
    spec = loss_spec(loss)
    return {
        key: value
        for key, value in overrides.items()
        if not (
            key.startswith("loss.") and key != "loss.name" and not spec.reads(key[len("loss.") :])
        )
    }


def check_applicable(overrides: dict[str, Any], losses: list[str]) -> None:
    """Refuse a loss field that none of ``losses`` reads: it would change nothing."""
    for key in overrides or {}:
        field = key[len("loss.") :]
        if (
            key.startswith("loss.")
            and key != "loss.name"
            and not any(loss_spec(loss).reads(field) for loss in losses)
        ):
            raise ValueError(
                f"{key} applies to none of this experiment's losses "
                f"({', '.join(sorted(set(losses)))}); drop it"
            )


def run_config(
    spec: RunSpec,
    out_dir: Path,
    *,
    overrides: dict[str, Any] | None = None,
    data_root: str | os.PathLike | None = None,
    runs_dir: str | os.PathLike | None = None,
) -> Config:
    """The config of one run: defaults, then the spec's overrides, then the user's
    ``overrides`` (applied to every run; they win), then ``data.data_dir`` from ``data_root``
    when no override set it, ``train.warm_start_cache = out_dir/warm_starts`` when none set it,
    ``model.init_from = runs_dir/<spec.init_from>`` (``runs_dir``: the experiment folder,
    default ``out_dir``) and ``out = out_dir/<spec.name>``."""
    given = {**spec.overrides, **applicable(overrides or {}, spec_loss(spec))}
    if spec.init_from is not None:
        given = {"model.init_from": str(Path(runs_dir or out_dir) / spec.init_from), **given}
    config = apply_overrides(Config(), given)
    if "train.warm_start_cache" not in given:
        config = apply_overrides(
            config, {"train.warm_start_cache": str(Path(out_dir) / WARM_STARTS)}
        )
    if data_root is not None and config.data.data_dir is None and config.data.name in DATA_FOLDERS:
        folder = Path(data_root).expanduser() / DATA_FOLDERS[config.data.name]
        config = apply_overrides(config, {"data.data_dir": str(folder)})
    return apply_overrides(config, {"out": str(Path(out_dir) / spec.name)}).validate()


#: How to retrain a finished run whose config differs, unless the caller knows better.
OVERWRITE_FIX = "pass overwrite=True (CLI: --overwrite) to retrain it"


def _finished(run_dir: Path, config: Config, fix: str = OVERWRITE_FIX) -> dict | None:
    """The summary of a finished run of ``config`` in ``run_dir``, or None if unfinished;
    a finished run of another config is an error that says ``fix``."""
    if not (run_dir / SUMMARY).is_file():
        return None
    # through the config tree, so that fields added since the run was trained count at
    # their defaults (a newer magnetdml still resumes an experiment an older one finished)
    saved = config_to_dict(config_from_dict(json.loads((run_dir / CONFIG).read_text())))
    asked = config_to_dict(pin_data_options(config))  # as train() writes it (image folders)
    if (run_dir / CHECKPOINT).is_file() and extends(saved, asked):
        return None  # the same run with more epochs: it trains on from its checkpoint
    if run_identity(saved) != run_identity(asked):
        raise ValueError(
            f"{str(run_dir)!r} holds a finished run with a different config than "
            f"this experiment asks for; {fix}, or choose another out directory (a run "
            "kept with its checkpoint trains on when only its epochs grow)"
        )
    return json.loads((run_dir / SUMMARY).read_text())


def train_runs(
    specs: list[RunSpec],
    out_dir: Path,
    *,
    overrides: dict[str, Any] | None = None,
    data_root: str | os.PathLike | None = None,
    overwrite: bool = False,
    keep_checkpoints: bool = False,
    progress: bool = True,
    jobs: int = 1,
    finished_only: bool = False,
    runs_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
    mismatch_fix: str = OVERWRITE_FIX,
) -> dict[str, RunOutcome]:
    """Train (or skip, or resume) every spec into ``out_dir/<name>/``; see the module doc.
    ``jobs > 1`` trains that many runs at once in worker processes (runs are independent and
    seeded, so the results are the same as one at a time). ``finished_only`` trains nothing
    and returns the finished runs only. Finished runs lose their checkpoint unless
    ``keep_checkpoints`` (results stay small). ``runs_dir``: where ``RunSpec.init_from``
    names are found (default ``out_dir``). ``mismatch_fix``: what the error for a finished run
    of another config tells the user to do (a caller without ``--overwrite`` says its own)."""
    log = log or (lambda _message: None)
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names) or not all(names):
        raise ValueError(f"run names must be unique and non-empty; got {names}")
    configs = [
        run_config(s, out_dir, overrides=overrides, data_root=data_root, runs_dir=runs_dir)
        for s in specs
    ]
    todo = []
    for number, (spec, config) in enumerate(zip(specs, configs, strict=True), start=1):
        if not overwrite and _finished(Path(config.out), config, mismatch_fix) is not None:
            log(f"[{number}/{len(specs)}] {spec.name} already finished; skipped")
        elif finished_only:
            log(f"[{number}/{len(specs)}] {spec.name} not finished; left out")
        else:
            log(f"[{number}/{len(specs)}] queued {spec.name}")
            todo.append(config)
    train_all(todo, jobs=jobs, overwrite=overwrite, progress=progress, log=log)
    outcomes = {}
    for spec, config in zip(specs, configs, strict=True):
        run_dir = Path(config.out)
        if not (run_dir / SUMMARY).is_file():
            continue  # finished_only: not trained yet
        summary = json.loads((run_dir / SUMMARY).read_text())
        if not keep_checkpoints:
            for name in DISPOSABLE:
                (run_dir / name).unlink(missing_ok=True)
        outcomes[spec.name] = RunOutcome(spec, run_dir, summary, RunDir(run_dir).read_history())
    return outcomes


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
