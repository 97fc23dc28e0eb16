"""``classification-tuned``: the classification experiment the paper's way (§4.1, App. B).

Where ``classification`` trains every loss with one hand-set configuration for ~1.5 passes,
this one is the benchmark of ``magnetdml benchmark --protocols seen`` on each dataset
(:mod:`.benchmark_plan`, the same engine): per dataset and loss, an Optuna study (seeded TPE,
``TRIALS`` trials, each trained to the full budget and pruned by the median rule on its
per-pass validation error) over the loss's own hyperparameters (:mod:`.search_space`: lr and
annealing for all; Magnet also the gap, the temperature, K, M and D; triplet the margin and
the nearest-impostor fraction), on a validation split (10% of each class's training images),
scored by the loss's own protocol; then ``SEEDS`` runs at the tuned configuration, each
trained until its validation error has not improved for ``patience`` passes (at most
``epochs``, :data:`BUDGET`) and scored on the test split with its best pass's model.
CIFAR-10's runs are those of ``benchmarks/benchmark_runs.sh cifar10`` for these losses.

An epoch is one real pass over the training data: the index refresh (Magnet, paper App. B:
"every epoch" on small datasets) and the learning-rate annealing follow passes, not a fixed
number of iterations. The validation error is recorded after every pass, so the report shows
whether it had stopped improving. Softmax trains on uniformly shuffled batches of 48 (its
standard protocol), triplet on 8 x 6 class-balanced batches, Magnet on M x D neighbourhoods
(M * D <= 48). The warm start (one pass of softmax at lr 0.05) is shared by the losses without
weights. The report has, per dataset, the benchmark's tables (mean ± sd, paired differences
against the best loss with 95% intervals, cost) and the classification experiment's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..reporting import plots
from .benchmark_plan import Plan, benchmark_plan
from .benchmark_report import plan_section
from .classification import BACKBONES, LOSSES, Classification, own_metric, relative_error
from .runner import EXPERIMENTS, RunOutcome, mean_std, metric

#: Passes at most, and the patience, of every trial and run per dataset; CIFAR-10's are those
#: of ``benchmarks/benchmark_runs.sh cifar10`` (README table (c)).
BUDGET = {"mnist": (8, 3), "fashion-mnist": (8, 3), "cifar10": (12, 4)}
TRIALS, SEEDS = 8, 3
CLASSES = 10  # every dataset's: the batches take P = min(8, classes) classes
#: One real pass per epoch; a fixed warm-start rate, so that runs and trials of other
#: learning rates share one warm start.
SHARED = {
    "train.iterations_per_epoch": 0,
    "train.warm_start_epochs": 1,
    "train.warm_start_lr": 0.05,
}


def dataset_plan(dataset: str, *, quick: bool = False, losses=LOSSES) -> Plan:
    """The benchmark of one dataset: ``magnetdml benchmark --dataset DATASET --protocols seen
    --model.backbone B`` with :data:`SHARED`'s flags and the dataset's :data:`BUDGET`, its
    searches and runs named ``<dataset>-seen-<loss>[-s<seed>]``. ``quick``: an MLP, 2 passes,
    1 seed, no warm start (minutes)."""
    epochs, patience = (2, 1) if quick else BUDGET[dataset]
    overrides = {"model.backbone": "mlp" if quick else BACKBONES[dataset], **SHARED}
    if quick:
        overrides["train.warm_start_epochs"] = 0
    return benchmark_plan(
        dataset,
        losses,
        seeds=1 if quick else SEEDS,
        epochs=epochs,
        patience=patience,
        protocols=("seen",),
        overrides=overrides,
        classes=CLASSES,
        prefix=f"{dataset}-",
        labels={"dataset": dataset},
    )


class TunedClassification(Classification):
    name = "classification-tuned"
    description = (
        "Softmax, triplet and Magnet benchmarked by the engine of 'magnetdml benchmark': "
        "each tuned by its own Optuna study (TPE, full-budget trials with median pruning) "
        "on a validation split (paper App. B), then trained until the validation error "
        "stops improving; test errors with each loss's own protocol and the other, 3 seeds, "
        "paired differences, validation curves, relative margins (paper §4.1)."
    )

    def _datasets(self, quick: bool) -> tuple[str, ...]:
        return ("fashion-mnist",) if quick else tuple(BUDGET)

    def specs(self, quick: bool) -> list:
        return [s for d in self._datasets(quick) for s in dataset_plan(d, quick=quick).runs]

    def tuning(self, quick: bool) -> list:
        return [s for d in self._datasets(quick) for s in dataset_plan(d, quick=quick).tuning]

    def tuning_trials(self, quick: bool) -> int:
        return 2 if quick else TRIALS

    def analyse(self, out_dir: Path, runs: dict[str, RunOutcome]) -> dict:
        results = super().analyse(out_dir, runs)
        out_dir = Path(out_dir)
        margins, curves_rows, sections = [], [], []
        for dataset in sorted({o.spec.group["dataset"] for o in runs.values()}):
            by_loss: dict[str, dict[int, RunOutcome]] = {}
            for o in runs.values():
                if o.spec.group["dataset"] == dataset:
                    by_loss.setdefault(o.spec.group["loss"], {})[o.spec.group["seed"]] = o
            margins += _margins(dataset, by_loss)
            section = plan_section(
                out_dir,
                [o for group in by_loss.values() for o in group.values()],
                self.tuned,
                f"{dataset}-",
                dataset,
            )
            sections += section.get("tables", [])
            results["figures"] += section.get("figures", [])
            results.setdefault("protocols", {}).update(section.get("protocols", {}))
            curves = {
                loss: _mean_curve(list(group.values()), f"val_{own_metric(loss)}")
                for loss, group in by_loss.items()
            }
            curves = {loss: c for loss, c in curves.items() if c}
            for loss, curve in curves.items():
                curves_rows.append({"dataset": dataset, "loss": loss, **_plateau(curve)})
            if curves:
                path = out_dir / f"learning_curves_{dataset}.png"
                plots.plot_error_curves(
                    curves,
                    path,
                    ylabel="validation error (own protocol)",
                    title=f"Validation error per pass, {dataset} (tuned, mean over seeds)",
                )
                results["figures"].append(
                    {"title": f"Learning curves, {dataset}", "path": path.name}
                )
        results["tables"] += [
            {
                "title": "Relative error of Magnet (own protocol), paired by seed: mean and "
                "spread over seeds (paper: about -0.3 vs triplet, below 0 vs softmax)",
                "rows": margins,
            },
            {
                "title": "Did the validation error stop improving? (own protocol, mean over seeds)",
                "rows": curves_rows,
            },
        ]
        results["tables"] += sections
        results["notes"].append(
            "last_quarter_gain: the validation error one quarter of the passes before the "
            "end minus the final one (> 0: still improving). best_pass: the pass of the "
            "lowest validation error (the scored model's)."
        )
        return results


def _margins(dataset: str, by_loss: dict[str, dict[int, RunOutcome]]) -> list[dict]:
    rows = []
    magnet = by_loss.get("magnet", {})
    for reference in ("softmax", "triplet"):
        other = by_loss.get(reference, {})
        paired = [
            relative_error(metric(magnet[s], "knc_error"), metric(other[s], own_metric(reference)))
            for s in sorted(set(magnet) & set(other))
        ]
        mean, spread = mean_std(paired)
        rows.append(
            {
                "dataset": dataset,
                "versus": reference,
                "seeds": len(paired),
                "relative_error": mean,
                "relative_std": spread,
            }
        )
    return rows


def _mean_curve(outcomes: list[RunOutcome], key: str) -> list[tuple[float, float]]:
    """``[(iteration, error)]`` averaged over the runs at the passes they all recorded."""
    per_run = [
        {line["iteration"]: line[key] for line in o.history if key in line} for o in outcomes
    ]
    common = sorted(set.intersection(*(set(c) for c in per_run))) if per_run else []
    return [(float(i), float(np.mean([c[i] for c in per_run]))) for i in common]


def _plateau(curve: list[tuple[float, float]]) -> dict:
    errors = [error for _, error in curve]
    back = max(1, len(errors) // 4)
    return {
        "passes": len(errors),
        "final_error": errors[-1],
        "best_error": min(errors),
        "best_pass": int(np.argmin(errors)) + 1,
        "last_quarter_gain": errors[-1 - back] - errors[-1] if len(errors) > back else None,
    }


EXPERIMENTS.register("classification-tuned")(TunedClassification)
