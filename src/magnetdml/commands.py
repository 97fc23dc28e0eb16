"""Subcommands beyond ``train`` register themselves with ``cli.command`` when imported."""

from . import cli_compare, cli_evaluate, cli_experiment, cli_report, cli_search  # noqa: F401
