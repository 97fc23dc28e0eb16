"""The benchmark engine's plan: which searches and which runs a benchmark trains.

One plan is, for a dataset, a list of losses and the protocols that the data allows:

* per protocol and loss, one **search** (a :class:`~.run_stage.RunSpec` named
  ``<prefix><protocol>-<loss>``, tuned by :func:`.tuning.tune`: Optuna's seeded TPE sampler,
  trials at the full budget ``train.epochs`` / ``train.patience``, pruned on their per-pass
  validation error);
* per protocol, loss and seed ``s < seeds``, one **run** ``<prefix><protocol>-<loss>-s<s>``
  of the same config with ``train.seed = s``, which takes its search's best configuration
  (:func:`.tuning.apply_tuned`; the seed is pinned).

Every search and run shares the base config of :func:`base_overrides` (the budget, no test
scoring between passes, no plots) and its protocol's fields (:func:`protocol_overrides`: the
validation split and batches of :data:`BATCH` images). ``magnetdml benchmark``
(:func:`.benchmark.run_benchmark`) plans with an empty prefix; an experiment that holds
several benchmarks in one folder (``finegrained``: one per target and start) gives each a
``prefix`` and ``labels`` (group labels that tell its searches apart in ``tuned.json``), and
``init_from``, the name of one of its pretraining runs that every search and run starts from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..training import Config, apply_overrides
from .benchmark_figures import slug
from .run_stage import RunSpec

PROTOCOLS = ("seen", "unseen")
VAL_FRACTION = 0.1  # seen: validation examples per class
TEST_CLASSES = 0.3  # unseen: classes held out for the test
VAL_CLASSES = 0.3  # unseen: of the others, held out for validation
BATCH = 48  # images per step for every loss (App. B: M x D <= 48)


@dataclass
class Plan:
    """A benchmark's searches (``tuning``) and runs; ``fields``: each planned protocol's
    config fields; ``skipped``: each protocol the data does not allow, with the reason."""

    tuning: list[RunSpec]
    runs: list[RunSpec]
    fields: dict[str, dict] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def base_overrides(
    dataset: str,
    *,
    epochs: int,
    patience: int,
    data_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The config every search and run of a benchmark shares: the user's ``overrides``, the
    dataset, the budget (``epochs`` passes at most, ``patience`` passes without a better
    validation error), no scoring of the test split between passes and no plots."""
    base = {
        **(overrides or {}),
        "data.name": dataset,
        "train.epochs": epochs,
        "train.patience": patience,
        "eval.every": 0,
        "eval.plots": False,
    }
    if data_dir is not None:
        base["data.data_dir"] = str(data_dir)
    return base


def protocol_overrides(
    protocol: str, base: dict, classes: int, examples: int | None = None, folds: int = 0
) -> dict[str, Any]:
    """The config fields of ``protocol`` on data of ``classes`` training classes: its
    validation split, and (unless ``base`` sets them) class-balanced batches of ``P x K =``
    :data:`BATCH` images with ``P = min(8, classes)``; uniform batches of all ``examples``
    training images where there are fewer than :data:`BATCH`. ``folds`` (unseen only): the
    validation classes are one of ``folds`` class folds (k-fold cross-validation over the
    training classes) instead of :data:`VAL_CLASSES` of them."""
    if protocol == "seen":  # a given val_fraction wins (e.g. 0 where the data has its own val)
        fields = {"data.val_fraction": base.get("data.val_fraction", VAL_FRACTION)}
    else:
        fields = {
            "data.val_fraction": 0.0,
            "data.unseen_classes": TEST_CLASSES,
            "data.val_classes": 0.0 if folds else VAL_CLASSES,
            **({"data.val_folds": folds} if folds else {}),
        }
    if "sampler.classes_per_batch" not in base:  # P x K = 48 with P no more than the classes
        p = min(8, classes)
        fields.update(
            {"sampler.classes_per_batch": p, "sampler.examples_per_class": max(2, BATCH // p)}
        )
    if "sampler.batch_size" not in base and examples is not None and examples < BATCH:
        fields["sampler.batch_size"] = examples  # a tiny dataset
    return fields


def protocol_fields(protocol: str, base: dict, folds: int = 0) -> tuple[dict, str | None]:
    """:func:`protocol_overrides` on the data of ``base`` (loaded to count its classes), or
    why the data does not allow ``protocol``."""
    from ..training.setup import load_splits

    fields = protocol_overrides(protocol, base, classes=8, folds=folds)  # the splits' only
    fields = {k: v for k, v in fields.items() if k.startswith("data.")}
    try:
        splits = load_splits(apply_overrides(Config(), {**base, **fields}))
    except ValueError as error:
        return {}, str(error)
    classes = np.unique(splits.train.labels).size
    if protocol == "unseen":
        test = np.unique(splits.unseen.labels).size if splits.unseen is not None else 0
        val = np.unique(splits.val.labels).size if splits.val is not None else 0
        if min(test, val) < 2 or classes < 2:
            return {}, (
                f"{classes} train, {val} validation and {test} test classes; the "
                "unseen protocol needs at least 2 of each"
            )
    return protocol_overrides(protocol, base, int(classes), len(splits.train), folds), None


def plan_runs(
    base: dict,
    losses: list[str] | tuple[str, ...],
    fields: dict[str, dict],
    *,
    seeds: int,
    prefix: str = "",
    init_from: str | None = None,
    labels: dict[str, Any] | None = None,
) -> tuple[list[RunSpec], list[RunSpec]]:
    """The searches and runs (see the module docstring) of every protocol of ``fields``
    (protocol -> its fields) and every loss of ``losses``."""
    tuning, runs = [], []
    for protocol, own_fields in fields.items():
        for loss in losses:
            group = {**(labels or {}), "protocol": protocol, "loss": loss}
            own = {**base, **own_fields, "loss.name": loss}
            name = f"{prefix}{protocol}-{slug(loss)}"
            tuning.append(RunSpec(name, own, group, init_from=init_from))
            folds = own.get("data.val_folds") or 0
            for seed in range(seeds):
                # class folds: one run per fold (trained on the other folds), else one run
                for fold in range(folds) if folds else (None,):
                    own_fold = {} if fold is None else {"data.val_fold": fold}
                    runs.append(
                        RunSpec(
                            f"{name}-s{seed}" + ("" if fold is None else f"-f{fold}"),
                            {**own, "train.seed": seed, **own_fold},
                            {**group, "seed": seed, **({} if fold is None else {"fold": fold})},
                            init_from=init_from,
                            pinned=("train.seed", *own_fold),
                        )
                    )
    return tuning, runs


def benchmark_plan(
    dataset: str,
    losses: list[str] | tuple[str, ...],
    *,
    seeds: int,
    epochs: int,
    patience: int,
    protocols: tuple[str, ...] = PROTOCOLS,
    data_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
    classes: int | None = None,
    prefix: str = "",
    init_from: str | None = None,
    labels: dict[str, Any] | None = None,
    folds: int = 0,
) -> Plan:
    """The plan of ``magnetdml benchmark`` for these settings (every loss name checked first,
    with a did-you-mean). ``classes``: the number of training classes, when the caller knows
    it (an experiment planning without its data); None: the data is loaded to count them and
    to check that each protocol fits (those that do not are ``skipped``). ``folds``: k-fold
    cross-validation over the training classes in the unseen protocol (each search's trials
    and each seed train once per fold; a seed's scores are the mean over its folds)."""
    for protocol in protocols:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")
    base = base_overrides(
        dataset, epochs=epochs, patience=patience, data_dir=data_dir, overrides=overrides
    )
    for loss in losses:  # every name checked (did-you-mean) before anything trains
        apply_overrides(Config(), {**base, "loss.name": loss}).validate()
    fields, skipped = {}, {}
    for protocol in protocols:
        own_folds = folds if protocol == "unseen" else 0
        if classes is not None:
            fields[protocol] = protocol_overrides(protocol, base, classes, folds=own_folds)
            continue
        own, reason = protocol_fields(protocol, base, own_folds)
        if reason:
            skipped[protocol] = reason
        else:
            fields[protocol] = own
    tuning, runs = plan_runs(
        base, losses, fields, seeds=seeds, prefix=prefix, init_from=init_from, labels=labels
    )
    return Plan(tuning, runs, fields, skipped)


def loss_space(space: dict[str, str], losses: list[str] | tuple[str, ...]):
    """``loss -> its --space.NAME ranges``: each range of ``space`` (``{"lr": "1e-3:1e-1"}``)
    for every loss of ``losses`` whose search space has that parameter (any loss, for the
    optional ones such as ``weight_decay``). A name no loss searches is refused, and every
    loss's space is built once so that a bad range fails before anything trains."""
    from .search_space import OPTIONAL, all_params, space_for
    from .trial_space import SearchSpace

    for name in space:
        if name not in all_params():
            raise ValueError(
                f"unknown search parameter space.{name}; valid: {', '.join(all_params())}"
            )
        if name not in OPTIONAL and not any(name in space_for(loss) for loss in losses):
            raise ValueError(
                f"space.{name} applies to none of the benchmarked losses "
                f"({', '.join(losses)}); drop the flag or add a loss that searches it"
            )
    ranges = {
        loss: {n: v for n, v in space.items() if n in OPTIONAL or n in space_for(loss)}
        for loss in losses
    }
    for loss, own in ranges.items():
        SearchSpace(loss, own)
    return lambda loss: ranges[loss]
