"""``magnetdml benchmark``: which loss for my data -- every loss tuned alike, then scored alike.

For each loss and each protocol the data allows (the fairness bar of Musgrave, Belongie & Lim,
"A Metric Learning Reality Check", ECCV 2020):

1. **tuning**: the same Optuna budget (``trials``, :mod:`.search`) on a validation split, each
   trial pruned on its per-pass validation error (the stage of :mod:`.tuning`);
2. **seeds**: ``seeds`` runs at the tuned configuration, trained until the validation error
   stops improving (``patience`` passes) or ``epochs`` passes (:func:`.run_stage.train_runs`);
3. **scores** on the test split:

   * ``seen`` (an instance split; validation: 10% of each class's training examples, or the
     data's own validation split with ``data.val_fraction 0``): Error@1
     and Error@5 by kNN, and by the loss's own kNC where it has a cluster index
     (``knc_error``); the loss's own classifier or proxies where the summary has them;
   * ``unseen`` (classes split into train, validation and test classes): MAP@R, R-precision,
     P@1, R@1 and NMI among the test classes' examples; validation by MAP@R among the
     validation classes' examples. ``data.split_by`` (e.g. ``alphabet``) holds out whole
     groups of classes instead: train on some alphabets, test on others.

Everything lands in ``out/``: ``tuning/<protocol>-<loss>/`` (each study's ``study.db`` and
trials), ``<protocol>-<loss>-s<seed>/`` (the runs, with their models), ``results.json``,
``report.md``, ``report.html`` and ``figures/``. Every stage resumes: a second identical call
trains nothing, a killed one goes on where it stopped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import check_int
from ..training import Config, apply_overrides
from ..training.machine import hardware
from ..training.run_dir import write_json
from .benchmark_report import analyse, slug, write_pages
from .run_stage import RunSpec, run_config, train_runs
from .tuning import apply_tuned, tune

PROTOCOLS = ("seen", "unseen")
#: The field's losses (issue 22): the project's baselines and Magnet, then PML's modern ones.
DEFAULT_LOSSES = (
    "softmax",
    "triplet",
    "contrastive",
    "magnet",
    "pml:ProxyAnchorLoss",
    "pml:MultiSimilarityLoss",
    "pml:NormalizedSoftmaxLoss",
    "pml:SoftTripleLoss",
    "pml:ProxyNCALoss",
    "pml:SupConLoss",
)
VAL_FRACTION = 0.1  # seen: validation examples per class
TEST_CLASSES = 0.3  # unseen: classes held out for the test
VAL_CLASSES = 0.3  # unseen: of the others, held out for validation
BATCH = 48  # images per step for every loss (App. B: M x D <= 48)


def run_benchmark(
    dataset: str,
    losses: list[str],
    out: str | os.PathLike,
    *,
    data_dir: str | None = None,
    trials: int = 20,
    seeds: int = 3,
    epochs: int = 30,
    patience: int = 5,
    jobs: int = 1,
    storage: str | None = None,
    protocols: tuple[str, ...] = PROTOCOLS,
    pruner: str = "median",
    overrides: dict[str, Any] | None = None,
    progress: bool = False,
    command: str | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Tune, train and score every loss of ``losses`` on ``dataset`` (see the module
    docstring); returns the results written to ``out/results.json``."""
    started = time.perf_counter()
    out = Path(out)
    if not losses or len(set(losses)) != len(losses):
        raise ValueError(f"losses must be distinct loss names, e.g. magnet,triplet; got {losses}")
    check_int("trials", trials, minimum=1)
    check_int("seeds", seeds, minimum=1)
    check_int("epochs", epochs, minimum=1)
    check_int(
        "patience",
        patience,
        minimum=1,
        fix="passes without a better validation error before a run stops",
    )
    jobs = check_int("jobs", jobs, minimum=1, fix="the number of runs trained at once")
    for protocol in protocols:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")
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
    for loss in losses:  # every name checked (did-you-mean) before anything trains
        apply_overrides(Config(), {**base, "loss.name": loss}).validate()
    out.mkdir(parents=True, exist_ok=True)
    finished_before = set(out.rglob("metrics.json"))
    plans, skipped = {}, {}
    for protocol in protocols:
        fields, reason = _protocol_fields(protocol, base)
        if reason:
            skipped[protocol] = reason
            log(f"{protocol} protocol skipped: {reason}")
        else:
            plans[protocol] = fields
    if not plans:
        raise ValueError(
            f"no protocol fits dataset {dataset!r}: "
            + "; ".join(f"{p}: {r}" for p, r in skipped.items())
        )
    tuning, specs = [], []
    for protocol, fields in plans.items():
        for loss in losses:
            group = {"protocol": protocol, "loss": loss}
            own = {**base, **fields, "loss.name": loss}
            tuning.append(RunSpec(f"{protocol}-{slug(loss)}", own, group))
            specs += [
                RunSpec(
                    f"{protocol}-{slug(loss)}-s{seed}",
                    {**own, "train.seed": seed},
                    {**group, "seed": seed},
                    pinned=("train.seed",),
                )
                for seed in range(seeds)
            ]

    def configure(spec: RunSpec, folder: Path) -> Config:
        return run_config(spec, folder, runs_dir=out)

    log(f"tuning {len(tuning)} search(es) of {trials} trial(s) each")
    tuned = tune(
        tuning,
        out,
        trials=trials,
        run_config=configure,
        jobs=jobs,
        progress=progress,
        pruner=pruner,
        log=log,
        storage_for=(lambda _spec: storage) if storage else None,
    )
    log(f"training {len(specs)} run(s) at the tuned configurations")
    # the final runs keep their models: the user picks one to use (``magnetdml evaluate``,
    # ``export``), and measures over the embeddings (attributes, clusters) re-embed with them
    runs = train_runs(
        apply_tuned(specs, tuned),
        out,
        progress=progress,
        jobs=jobs,
        log=log,
        runs_dir=out,
        keep_checkpoints=True,
    )
    from .._paths import portable_path

    results = {
        "benchmark": {
            "dataset": dataset,
            "losses": list(losses),
            "data_dir": portable_path(data_dir) if data_dir else None,
            "trials": trials,
            "seeds": seeds,
            "epochs": epochs,
            "patience": patience,
            "pruner": pruner,
            "jobs": jobs,
            "protocols": list(plans),
            "skipped": skipped,
            "overrides": dict(overrides or {}),
        },
        "command": command,
        "hardware": hardware(configure(specs[0], out)),
        "wall_seconds": round(time.perf_counter() - started, 1),
        **analyse(out, runs, tuned, plans),
    }
    results["trained"] = len(set(out.rglob("metrics.json")) - finished_before)
    if not results["trained"]:  # a rerun that trained nothing keeps how they were measured
        results.update(_provenance(out / "results.json"))
    write_json(out / "results.json", results)
    write_pages(out, results)
    return results


def _provenance(path: Path) -> dict:
    """The command, hardware and wall time of the results that trained the runs, if any."""
    import json

    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(previous, dict) or not previous.get("trained"):
        return {}
    return {
        key: previous[key]
        for key in ("command", "hardware", "wall_seconds", "trained")
        if key in previous
    }


def _protocol_fields(protocol: str, base: dict) -> tuple[dict, str | None]:
    """The config fields of ``protocol`` on the data of ``base`` (its splits, and batches of
    :data:`BATCH` images that fit its training classes), or why the data does not allow it."""
    from ..training.setup import load_splits

    if protocol == "seen":  # a given val_fraction wins (e.g. 0 where the data has its own val)
        fields = {"data.val_fraction": base.get("data.val_fraction", VAL_FRACTION)}
    else:
        fields = {
            "data.val_fraction": 0.0,
            "data.unseen_classes": TEST_CLASSES,
            "data.val_classes": VAL_CLASSES,
        }
    config = apply_overrides(Config(), {**base, **fields})
    try:
        splits = load_splits(config)
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
    if "sampler.classes_per_batch" not in base:  # P x K = 48 with P no more than the classes
        p = min(8, classes)
        fields.update(
            {"sampler.classes_per_batch": p, "sampler.examples_per_class": max(2, BATCH // p)}
        )
    if "sampler.batch_size" not in base and len(splits.train) < BATCH:  # a tiny dataset
        fields["sampler.batch_size"] = len(splits.train)
    return fields, None
