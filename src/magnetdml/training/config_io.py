"""Config <-> dict, YAML/JSON files and ``--section.field`` command-line flags."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from .config import SECTIONS, Config

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def config_to_dict(config: Config) -> dict[str, Any]:
    """The nested plain dict written to ``config.json``."""
    return dataclasses.asdict(config)


def _leaf_types(section_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(section_cls)


def _parse_value(name: str, text: Any, annotation: Any) -> Any:
    """Convert a CLI/file value to the field's type; errors name the field and the value."""
    args = typing.get_args(annotation)
    optional = (
        typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args
    )
    if optional:
        if text is None or (isinstance(text, str) and text.lower() in ("none", "null", "")):
            return None
        annotation = next(a for a in args if a is not type(None))
    if not isinstance(text, str):
        if annotation is float and isinstance(text, int) and not isinstance(text, bool):
            return float(text)
        if isinstance(text, annotation):
            return text
        raise ValueError(f"{name} must be of type {annotation.__name__}; got {text!r}")
    try:
        if annotation is bool:
            lowered = text.lower()
            if lowered not in _TRUE | _FALSE:
                raise ValueError
            return lowered in _TRUE
        return annotation(text)
    except ValueError:
        raise ValueError(f"{name} must be of type {annotation.__name__}; got {text!r}") from None


def config_from_dict(data: dict[str, Any], base: Config | None = None) -> Config:
    """Build a config from a nested dict (as in ``config.json``), on top of ``base``."""
    config = base or Config()
    if not isinstance(data, dict):
        raise ValueError(f"a config must be a mapping of sections; got {type(data).__name__}")
    # magnetdml_version: written into config.json by the run folder, not a field
    data = {k: v for k, v in data.items() if k != "magnetdml_version"}
    unknown = set(data) - set(SECTIONS) - {"out"}
    if unknown:
        raise ValueError(
            f"unknown config section(s) {sorted(unknown)}; valid: {', '.join(SECTIONS)}, out"
        )
    flat = {}
    for section, values in data.items():
        if section == "out":
            flat["out"] = values
            continue
        if not isinstance(values, dict):
            raise ValueError(f"config section {section!r} must be a mapping; got {values!r}")
        for key, value in values.items():
            flat[f"{section}.{key}"] = value
    return apply_overrides(config, flat)


def apply_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """Return a copy of ``config`` with ``{"section.field": value}`` applied (values may be
    strings from the command line; they are parsed to the field's type)."""
    changes: dict[str, dict[str, Any]] = {}
    for dotted, value in overrides.items():
        if dotted == "out":
            config = dataclasses.replace(config, out=None if value is None else str(value))
            continue
        section, _, key = dotted.partition(".")
        if section not in SECTIONS:
            raise ValueError(f"unknown config field {dotted!r}; sections are {', '.join(SECTIONS)}")
        types_ = _leaf_types(type(getattr(config, section)))
        if key not in types_:
            raise ValueError(
                f"unknown config field {dotted!r}; fields of {section}: {', '.join(types_)}"
            )
        changes.setdefault(section, {})[key] = _parse_value(dotted, value, types_[key])
    for section, values in changes.items():
        config = dataclasses.replace(
            config, **{section: dataclasses.replace(getattr(config, section), **values)}
        )
    return config


def load_config_file(path: str | Path, base: Config | None = None) -> Config:
    """Read a YAML or JSON config file (same nesting as ``config.json``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"config file {str(path)!r} is not valid JSON: {error.msg} at line "
            f"{error.lineno}, column {error.colno}"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"config file {str(path)!r} is not valid YAML: {problem}{where}") from None
    return config_from_dict(data or {}, base)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config FILE`` and one ``--section.field`` flag per leaf; its help is the
    field's comment in ``config.py``, its valid values where they are a list, and its default
    (once: the flag itself defaults to "not given", so the formatter adds nothing)."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML or JSON config file; flags given on the command line override it",
    )
    defaults = Config()
    choices = field_choices()
    for section in SECTIONS:
        group = parser.add_argument_group(f"{section} options")
        section_value = getattr(defaults, section)
        hints = _leaf_types(type(section_value))
        comments = field_comments(type(section_value))
        for f in dataclasses.fields(section_value):
            name = f"{section}.{f.name}"
            default = getattr(section_value, f.name)
            parts = [comments.get(f.name, "")]
            if name in choices:
                parts.append(f"one of: {', '.join(choices[name])}")
            parts.append(
                f"(default: {default!r})" if isinstance(default, str) else f"(default: {default})"
            )
            group.add_argument(
                f"--{name}",
                dest=f"cfg:{name}",
                metavar=_type_name(hints[f.name]),
                default=argparse.SUPPRESS,
                help="; ".join(p for p in parts[:-1] if p) + " " + parts[-1],
            )


def field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` of a config dataclass: the ``#`` comment on a field's line and the
    comment-only lines under it (the config's documentation lives beside its fields)."""
    comments: dict[str, list[str]] = {}
    current = None
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        field_line = re.match(r"(\w+): [^=]+=[^#]*#\s?(.*)$", stripped)
        if field_line:
            current = field_line.group(1)
            comments[current] = [field_line.group(2).strip()]
        elif current and stripped.startswith("#"):
            comments[current].append(stripped.lstrip("#").strip())
        else:
            current = None
    return {name: " ".join(text).strip() for name, text in comments.items()}


def field_choices() -> dict[str, list[str]]:
    """The valid values of the config fields that take a name from a list: the choices of
    their rules, the loss names and the devices."""
    from ..losses import LOSSES

    choices, defaults = {}, Config()
    for section in SECTIONS:
        for f in dataclasses.fields(getattr(defaults, section)):
            found = f.metadata.get("rule")
            if found is not None and found.choices is not None:
                valid = found.choices() if callable(found.choices) else found.choices
                choices[f"{section}.{f.name}"] = list(valid)
    choices["loss.name"] = [*LOSSES.names(), "pml:CLASSNAME"]
    choices["train.device"] = ["cpu", "cuda", "cuda:N", "auto"]
    return choices


def _type_name(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return (args[0] if args else annotation).__name__.upper()


def config_from_arguments(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Config:
    """The config from ``--config`` and the ``--section.field`` flags (flags win), then
    ``extra`` overrides (shortcut flags such as ``--dataset``), validated."""
    config = Config()
    if getattr(args, "config", None):
        config = load_config_file(args.config, config)
    flags = {
        key[4:]: value
        for key, value in vars(args).items()
        if key.startswith("cfg:") and value is not None
    }
    config = apply_overrides(
        config, {**flags, **{k: v for k, v in (extra or {}).items() if v is not None}}
    )
    return config.validate()
