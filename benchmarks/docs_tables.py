"""Every result table in the docs, generated from the committed results files.

A table in a Markdown file is a block between a marker comment and ``<!-- /table -->``::

    <!-- table: benchmarks/results/knc_scale.json | rows: results
         | columns: reference, knc_speedup:x, knc_error:% -->
    ... generated lines ...
    <!-- /table -->

``rows`` is the path (keys and list indices joined by ``.``) from the file's top level to a
list of row dicts, or to a dict (one row per key, as ``name``; a value that is not a dict is
the row's ``value``). ``columns`` are the row keys to show (``a.b`` reads inside a row), each
with an optional format: ``%`` (a fraction as a percentage, with `` ± sd`` when the row has
``KEY_std``, or ``STEM_std`` for a ``STEM_error``), ``x`` (a ratio), ``.N`` (N decimals),
``g`` (3 significant digits), ``s`` (seconds), none (as written); a dict value is written as
``key value, ...`` and a list as ``a / b``. ``where: KEY=VALUE`` keeps matching rows
(``KEY=A,B``: either). ``fold: SUFFIX`` folds the rows named ``NAME`` + SUFFIX + a number
(``-seed1``) into the row ``NAME``: numbers become the mean over the group, with its spread
as ``KEY_std``, and ``seeds`` counts the group. ``command: ...`` names the command when the
file does not. ``FILE@COMMIT`` reads the file as committed at COMMIT (``git show``): history
that a later run of the same command has overwritten. Under each table a line names its
command, the commit that last wrote the results file and the machine's CPU.

    python benchmarks/docs_tables.py            # rewrite the tables of README.md and docs/
    python benchmarks/docs_tables.py --check    # exit 1 if a committed table is stale
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "docs")
BLOCK = re.compile(r"(<!-- table:(?P<spec>.*?)-->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def _parse_spec(text: str) -> dict[str, str]:
    """``file | key: value | ...`` -> ``{"file": file, key: value, ...}``."""
    parts = [p.strip() for p in " ".join(text.split()).split("|")]
    spec = {"file": parts[0]}
    for part in parts[1:]:
        key, _, value = part.partition(":")
        spec[key.strip()] = value.strip()
    return spec


def _at(data, path: str):
    for key in [k for k in path.split(".") if k]:
        data = data[int(key)] if isinstance(data, list) else data[key]
    return data


def _rows(data, path: str) -> list[dict]:
    """The row dicts at ``path``: a list of them, or a dict of them keyed by ``name`` (where a
    value is not a dict, its row is ``{"name": key, "value": value}``)."""
    found = _at(data, path)
    if isinstance(found, dict):
        return [
            {"name": k, **v} if isinstance(v, dict) else {"name": k, "value": v}
            for k, v in found.items()
        ]
    return found


def _cells(row: dict, key: str) -> dict:
    """``key``'s value in ``row`` (``a.b`` reads inside it) and its spreads, by flat names."""
    parent, _, leaf = key.rpartition(".")
    inner = row
    for part in [p for p in parent.split(".") if p]:
        inner = inner.get(part) if isinstance(inner, dict) else None
    inner = inner if isinstance(inner, dict) else {}
    prefix = key[: len(key) - len(leaf)]
    # the spread of KEY is KEY_std, or STEM_std for KEY = STEM_error (own_error: own_std)
    names = (leaf, f"{leaf}_std", f"{leaf.removesuffix('_error')}_std")
    return {prefix + name: inner[name] for name in names if name in inner}


def _flat(row: dict, keys: list[str]) -> dict:
    return {name: value for key in keys for name, value in _cells(row, key).items()}


def _fold(rows: list[dict], suffix: str) -> list[dict]:
    """Rows named NAME + suffix + digits join row NAME: numbers averaged, spread as KEY_std."""
    tail = re.compile(re.escape(suffix) + r"\d+$")
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(tail.sub("", str(row.get("name"))), []).append(row)
    folded = []
    for name, group in groups.items():
        row = {**group[0], "name": name}
        for key in group[0] if len(group) > 1 else ():
            values = [g.get(key) for g in group]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                mean = sum(values) / len(values)
                var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
                row[key], row[f"{key}_std"] = mean, var**0.5
        folded.append({**row, "seeds": len(group)})
    return folded


def _format(row: dict, key: str, style: str) -> str:
    value = row.get(key)
    if value is None:
        return "–"
    if isinstance(value, list):
        return " / ".join(_format({key: v}, key, style) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k.rpartition('.')[2]} {_short(v)}" for k, v in value.items())
    if style == "%":
        text = f"{100 * value:.2f}%"
        spread = row.get(f"{key}_std", row.get(f"{key.removesuffix('_error')}_std"))
        return text if spread is None else f"{text} ± {100 * spread:.2f}"
    if style == "x":
        return f"{value:.2f}×"
    if style == "s":
        return f"{value:.1f} s"
    if style == "g":
        return _short(float(value))
    if style.startswith(".") and isinstance(value, (int, float)):
        return f"{value:.{int(style[1:])}f}"
    return str(value)


def _short(value) -> str:
    """A search parameter as people write it: three significant digits (a rate of 1,637
    images/s as 1640, not 1.64e+03: exponents only beyond a million or below 0.001)."""
    if not isinstance(value, float):
        return str(value)
    if value != 0 and 1e-3 <= abs(value) < 1e6:
        return f"{float(f'{value:.3g}'):.15g}"
    return f"{value:.3g}"


HASH_LENGTH = 7


def _commit(path: Path) -> str:
    """The commit that last changed ``path`` (``uncommitted`` for a new or edited file)."""
    try:
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        last = subprocess.run(
            ["git", "log", "-1", "--format=%H", "--", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    # A fixed length, not git's %h: that abbreviation grows with the repository's object
    # count, so a clone with more objects (CI's) would print a longer hash for the same commit.
    return "uncommitted" if dirty or not last else last[:HASH_LENGTH]


def _cpu(data: dict) -> str:
    for where in (data, data.get("setup") or {}):
        for key in ("hardware", "machine"):
            found = where.get(key)
            if isinstance(found, str):
                return found
            if isinstance(found, dict):
                cores = found.get("cores") or found.get("cpu_count") or found.get("cpus")
                return f"{found.get('cpu', 'not recorded')}" + (f", {cores} cores" if cores else "")
    return "not recorded"


def _load(name: str) -> tuple[dict, str]:
    """The results file ``name`` (``FILE@COMMIT``: as committed then) and that commit."""
    name, _, commit = name.partition("@")
    if not commit:
        path = ROOT / name
        return json.loads(path.read_text()), _commit(path)
    shown = subprocess.run(
        ["git", "show", f"{commit}:{name}"], cwd=ROOT, capture_output=True, text=True
    )
    if shown.returncode:
        raise SystemExit(f"{name}@{commit}: not in git ({shown.stderr.strip()}); fix the marker")
    return json.loads(shown.stdout), commit


def render(spec: dict[str, str]) -> str:
    """The Markdown lines of one table block."""
    data, commit = _load(spec["file"])
    rows = _rows(data, spec.get("rows", ""))
    if "where" in spec:
        key, _, wanted = spec["where"].partition("=")
        rows = [r for r in rows if str(r.get(key.strip())) in wanted.replace(" ", "").split(",")]
    columns = [c.strip().partition(":")[::2] for c in spec["columns"].split(",")]
    # one flat dict per row: the shown keys (and their spreads) under their dotted names
    flat = [{"name": r.get("name")} | _flat(r, [key for key, _ in columns]) for r in rows]
    if "fold" in spec:
        flat = _fold(flat, spec["fold"])
    header = [key.rpartition(".")[2] for key, _ in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(columns)]
    lines += [
        "| " + " | ".join(_format(r, key, style) for key, style in columns) + " |" for r in flat
    ]
    command = spec.get("command") or data.get("command") or "not recorded"
    lines.append("")
    # a file of runs may record the machine per run: then the first row's names it
    cpu = _cpu(data)
    if cpu == "not recorded" and rows and isinstance(rows[0], dict):
        cpu = _cpu(rows[0])
    lines.append(f"*`{command}` · results committed at {commit} · CPU: {cpu}*")
    return "\n".join(lines) + "\n"


def update(text: str) -> str:
    """``text`` with every table block regenerated."""
    return BLOCK.sub(lambda m: m.group(1) + render(_parse_spec(m.group("spec"))) + m.group(4), text)


def documents() -> list[Path]:
    found = []
    for name in DOCS:
        path = ROOT / name
        found += sorted(path.rglob("*.md")) if path.is_dir() else [path] if path.is_file() else []
    return found


def _first_difference(old: str, new: str) -> str:
    """The first line that differs, as ' (line N: was ... / now ...)', so a failing check
    says what changed rather than only which file."""
    old_lines, new_lines = old.splitlines(), new.splitlines()
    for number, (was, now) in enumerate(zip(old_lines, new_lines, strict=False), start=1):
        if was != now:
            return f" (line {number}: was {was!r} / now {now!r})"
    return f" (line count {len(old_lines)} -> {len(new_lines)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="only report stale tables (exit 1), write nothing"
    )
    args = parser.parse_args(argv)
    stale = []
    for path in documents():
        text = path.read_text()
        new = update(text)
        if new != text:
            stale.append((path.relative_to(ROOT), _first_difference(text, new)))
            if not args.check:
                path.write_text(new)
    verb = "stale" if args.check else "rewritten"
    for path, difference in stale:
        print(f"{verb}: {path}{difference if args.check else ''}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
