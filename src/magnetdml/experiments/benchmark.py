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
     groups of classes instead: train on some alphabets, test on others. ``folds = K``:
     k-fold cross-validation over the non-test classes (the reality check's 4 folds): every
     trial and every seed trains once per fold, on the other folds' classes, validated on its
     own; a trial's value is the mean over its folds, a seed's test scores the mean of its
     folds' runs (``<protocol>-<loss>-s<seed>-f<fold>/``).

The searches and runs are planned by :mod:`.benchmark_plan` (the engine that ``experiment
finegrained`` and ``experiment classification-tuned`` plan with too) and scored by
:mod:`.benchmark_report`. Everything lands in ``out/``: ``tuning/<protocol>-<loss>/`` (each
study's ``study.db`` and trials), ``<protocol>-<loss>-s<seed>/`` (the runs, with their
models), ``results.json``, ``report.md``, ``report.html`` and ``figures/``. Every stage
resumes: a second identical call trains nothing, a killed one goes on where it stopped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._validation import check_int
from ..training import Config
from ..training.atomic_files import write_json
from ..training.machine import hardware
from .benchmark_plan import (  # noqa: F401  (the engine's names, importable from here)
    BATCH,
    PROTOCOLS,
    TEST_CLASSES,
    VAL_CLASSES,
    VAL_FRACTION,
    benchmark_plan,
    loss_space,
)
from .benchmark_report import analyse, slug, write_pages  # noqa: F401
from .run_stage import RunSpec, run_config, train_runs
from .tuning import apply_tuned, tune

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


#: What to do when a final run was trained at another configuration than the one asked now.
RETRAIN_FIX = (
    "its tuned configuration or flags have changed since (a larger --trials, say); delete "
    "that run folder to retrain it at the new one (the studies in tuning/ are kept)"
)


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
    space: dict[str, str] | None = None,
    folds: int = 0,
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
    if folds:
        check_int("folds", folds, minimum=2, fix="the number of class folds, e.g. 4 (0: none)")
        if "unseen" not in protocols:
            raise ValueError(
                f"folds {folds} cross-validates over classes, which only the unseen protocol "
                "holds out; add unseen to --protocols or drop --folds"
            )
    space = dict(space or {})
    space_for = loss_space(space, losses)  # a bad --space.NAME: refused before anything else
    plan = benchmark_plan(
        dataset,
        losses,
        seeds=seeds,
        epochs=epochs,
        patience=patience,
        protocols=protocols,
        data_dir=data_dir,
        overrides=overrides,
        folds=folds,
    )
    for protocol, reason in plan.skipped.items():
        log(f"{protocol} protocol skipped: {reason}")
    if not plan.fields:
        raise ValueError(
            f"no protocol fits dataset {dataset!r}: "
            + "; ".join(f"{p}: {r}" for p, r in plan.skipped.items())
        )
    out.mkdir(parents=True, exist_ok=True)
    finished_before = set(out.rglob("metrics.json"))
    tuning, specs = plan.tuning, plan.runs

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
        space_for=(lambda spec: space_for(spec.group["loss"])) if space else None,
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
        # e.g. a larger --trials found a better configuration: the studies stay, the runs go
        mismatch_fix=RETRAIN_FIX,
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
            "protocols": list(plan.fields),
            "skipped": plan.skipped,
            "overrides": dict(overrides or {}),
            **({"space": space} if space else {}),  # only when given: the schema stays
            **({"folds": folds} if folds else {}),
        },
        "command": command,
        "hardware": hardware(configure(specs[0], out)),
        "wall_seconds": round(time.perf_counter() - started, 1),
        **analyse(out, runs, tuned, plan.fields),
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
