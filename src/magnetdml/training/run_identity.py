"""A run's identity: its ``config.json`` without the fields that say where and how fast it
computes, so that a run resumed, moved or compared on another machine is the same run."""

from __future__ import annotations

import json
import os
from typing import Any

from .atomic_files import plain_json

#: The key of ``config.json`` that records the magnetdml version that wrote it (not a field of
#: the config: reading the file back ignores it, and runs of two versions compare equal).
VERSION_KEY = "magnetdml_version"


#: Config fields that say where and how fast a run computes, not what: a run resumed or
#: compared with other values of these is the same run (another thread count, device, data
#: folder; ``out`` itself: a moved run folder, or the same one by another path; where the
#: metrics are also logged).
MACHINE_FIELDS = (
    ("train", "threads"),
    ("train", "device"),
    ("train", "warm_start_cache"),
    ("data", "data_dir"),
    ("train", "log"),
)


def run_identity(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` (a ``config.json`` dict) without ``out`` and the machine fields."""
    config = json.loads(json.dumps(config, default=plain_json))
    for section, key in MACHINE_FIELDS:
        config.get(section, {}).pop(key, None)
    config.pop("out", None)
    config.pop(VERSION_KEY, None)
    # the same weights by an absolute or a relative path (results now record relative ones)
    init_from = config.get("model", {}).get("init_from")
    if init_from:
        config["model"]["init_from"] = os.path.abspath(init_from)
    return config


def with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved ``config.json`` with every field added since it was written at its default,
    so that a newer magnetdml resumes (or trains on) a run an older one wrote."""
    from dataclasses import asdict

    from .config import Config

    defaults = asdict(Config())
    return {
        **defaults,
        **{
            key: (
                {**defaults[key], **value}
                if isinstance(value, dict) and isinstance(defaults.get(key), dict)
                else value
            )
            for key, value in saved.items()
        },
    }


def without_epochs(config: dict[str, Any]) -> dict[str, Any]:
    """The run's identity without ``train.epochs`` (a run may be trained on to more)."""
    identity = run_identity(config)
    identity.get("train", {}).pop("epochs", None)
    return identity


def extends(previous: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether ``config`` trains the finished run ``previous`` on: the same run with more
    epochs, neither stopping on patience (a patience run's checkpoint is its best epoch)."""

    def epochs(c):
        return c.get("train", {}).get("epochs", 0)

    def patience(c):
        return c.get("train", {}).get("patience", 0)

    return (
        without_epochs(previous) == without_epochs(config)
        and epochs(config) > epochs(previous)
        and not patience(config)
        and not patience(previous)
    )
