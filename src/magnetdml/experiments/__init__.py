"""The paper's and the students' experiments as commands (layer 6): ``magnetdml experiment``.

Each experiment module registers itself in :data:`EXPERIMENTS` on import; see
:mod:`magnetdml.experiments.runner` for the framework (RunSpec, Experiment, RunOutcome,
run_experiment) and the keys of the results dict that ``report.md`` renders.
"""

from importlib import import_module
from importlib.util import find_spec

from .runner import (
    DATA_FOLDERS,
    EXPERIMENTS,
    Experiment,
    RunOutcome,
    RunSpec,
    hardware,
    markdown_table,
    mean_std,
    metric,
    render_report,
    run_experiment,
    save_results,
    train_runs,
)

__all__ = ["DATA_FOLDERS", "EXPERIMENTS", "Experiment", "RunOutcome", "RunSpec", "hardware",
           "markdown_table", "mean_std", "metric", "render_report", "run_experiment",
           "save_results", "train_runs"]

# Each experiment registers itself in EXPERIMENTS on import. Modules not written yet (the
# experiments are added one by one) are skipped; an error inside an existing one is raised.
for _module in ("classification", "convergence", "unseen", "clusters", "hierarchy",
                "attributes"):
    if find_spec(f"{__name__}.{_module}") is not None:
        import_module(f"{__name__}.{_module}")
