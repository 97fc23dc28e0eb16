"""Subcommands beyond ``train`` (evaluate, compare, ...) register here with ``cli.command``."""
from . import cli_experiment  # noqa: F401  (register experiment)
from .cli_report import run_report as _report  # noqa: F401  (register report)
from .cli_search import run_search as _search  # noqa: F401  (register search)
