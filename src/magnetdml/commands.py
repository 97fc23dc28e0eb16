"""Subcommands beyond ``train`` (evaluate, compare, ...) register here with ``cli.command``."""
