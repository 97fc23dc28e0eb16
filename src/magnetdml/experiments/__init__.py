"""The paper's and the students' experiments as commands (layer 6): ``magnetdml experiment``.

Each experiment module registers itself in :data:`EXPERIMENTS` on import; see
:mod:`magnetdml.experiments.runner` for the framework (RunSpec, Experiment, RunOutcome,
run_experiment) and the keys of the results dict that ``report.md`` / ``report.html`` render
(:func:`magnetdml.reporting.write_report`, the one renderer of runs, compares, experiments
and benchmarks).

Beside them, the two other drivers above training: :mod:`~magnetdml.experiments.compare`
(``magnetdml compare``: several losses under one budget) and
:mod:`~magnetdml.experiments.search` (``magnetdml search``: Optuna hyperparameter search over
:mod:`~magnetdml.experiments.search_space`); they are imported on use, not here.
"""

# Each experiment module registers itself in EXPERIMENTS on import.
from ..reporting.page import markdown_table
from . import (  # noqa: F401
    attributes,
    classification,
    classification_tuned,
    clusters,
    convergence,
    finegrained,
    hierarchy,
    hierarchy_tuned,
    unseen,
)
from .runner import (
    DATA_FOLDERS,
    EXPERIMENTS,
    Experiment,
    RunOutcome,
    RunSpec,
    hardware,
    mean_std,
    metric,
    run_experiment,
    save_results,
    train_runs,
)

__all__ = [
    "DATA_FOLDERS",
    "EXPERIMENTS",
    "Experiment",
    "RunOutcome",
    "RunSpec",
    "hardware",
    "markdown_table",
    "mean_std",
    "metric",
    "run_experiment",
    "save_results",
    "train_runs",
]
