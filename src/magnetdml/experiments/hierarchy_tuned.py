"""``hierarchy-tuned``: hierarchy recovery (paper §4.3) with every loss at its tuned configuration.

The ``hierarchy`` experiment trains every loss with one hand-set configuration for 5 short
passes. Here each loss trains as in ``classification-tuned`` (:mod:`.classification_tuned`):
its own tuned hyperparameters (lr and annealing; triplet's margin and impostor fraction;
Magnet's gap, temperature and ``M x D`` neighbourhoods), the dataset's budget
(:data:`~.classification_tuned.BUDGET`: passes at most, and the patience on the validation
error), one softmax warm-start pass, ``SEEDS`` seeds, but on the **coarse** labels of
``data.collapse_pairs`` (random pairs of classes merged into one label; the fine one kept as
the attribute ``"fine"``) and scored on the fine ones as ``hierarchy`` scores them
(:func:`~.hierarchy.measure_run`).

Two fields are the experiment's, not the tuning's, and stay pinned:

* ``index.clusters_per_class = K`` (:data:`~.hierarchy.CLUSTERS_PER_CLASS`): recovering two
  hidden classes per label needs several clusters per label (the paper: K = 16). The
  classification search chose K = 1 on Fashion-MNIST, which would make Magnet's kNC blind to
  the fine classes by construction;
* class-balanced batches of ``P x K = 4 x 12`` (5 coarse classes leave no room for 8).

The tuned configurations come from this experiment's own tuning stage (the searches of
``classification-tuned`` on the fine labels), or, with ``--tuned DIR``, from the
``tuned.json`` of a finished ``classification-tuned`` folder:
``magnetdml experiment hierarchy-tuned --tuned
benchmarks/results/experiments/classification-tuned``.
"""

from __future__ import annotations

import dataclasses

from .classification_tuned import TRIALS, dataset_plan
from .hierarchy import LOSSES, PAIRS, Hierarchy
from .runner import EXPERIMENTS

#: the experiment's own fields (``hierarchy``'s), kept over any tuned value (see the module
#: docstring)
PINNED = PAIRS


class TunedHierarchy(Hierarchy):
    name = "hierarchy-tuned"
    description = (
        "Hierarchy recovery (paper §4.3) with every loss at its tuned configuration "
        "(classification-tuned's searches; --tuned DIR reuses a finished one): trained "
        "on collapsed pairs of classes until the validation error stops improving, "
        "3 seeds, scored on the fine classes (kNN, and kNC over K = 8 clusters per label)."
    )

    def _datasets(self, quick: bool) -> tuple[str, ...]:
        return ("fashion-mnist",) if quick else ("fashion-mnist", "cifar10")

    def specs(self, quick: bool) -> list:
        runs = []
        for dataset in self._datasets(quick):
            for spec in dataset_plan(dataset, quick=quick, losses=LOSSES).runs:
                loss, seed = spec.group["loss"], spec.group["seed"]
                runs.append(
                    dataclasses.replace(
                        spec,
                        name=f"{dataset}-{loss}-s{seed}",
                        overrides={**spec.overrides, **PINNED},
                        pinned=(*spec.pinned, *PINNED),
                    )
                )
        return runs

    def tuning(self, quick: bool) -> list:
        return [
            spec
            for dataset in self._datasets(quick)
            for spec in dataset_plan(dataset, quick=quick, losses=LOSSES).tuning
        ]

    def tuning_trials(self, quick: bool) -> int:
        return 2 if quick else TRIALS


EXPERIMENTS.register("hierarchy-tuned")(TunedHierarchy)
