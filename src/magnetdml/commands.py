"""Subcommands beyond ``train`` (evaluate, compare, ...) register here with ``cli.command``."""
from . import cli_experiment  # noqa: F401  (register experiment)
from .cli_compare import run_compare as _compare  # noqa: F401  (register compare)
from .cli_evaluate import run_evaluate as _evaluate  # noqa: F401  (register evaluate)
from .cli_report import run_report as _report  # noqa: F401  (register report)
from .cli_search import run_search as _search  # noqa: F401  (register search)
