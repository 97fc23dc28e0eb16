"""Every result table in the docs, generated from the committed results files.

A table in a Markdown file is a block between a marker comment and ``<!-- /table -->``::

    <!-- table: benchmarks/results/knc_scale.json | rows: results
         | columns: reference, knc_speedup:x, knc_error:% -->
    ... generated lines ...
    <!-- /table -->

``rows`` is the path (keys and list indices joined by ``.``) from the file's top level to a
list of row dicts; ``columns`` are the row keys to show, each with an optional format: ``%``
(a fraction as a percentage, with `` ± sd`` when the row has ``KEY_std``, or ``STEM_std``
for a ``STEM_error``), ``x`` (a ratio),
``.N`` (N decimals), ``s`` (seconds), none (as written). ``where: KEY=VALUE`` keeps matching
rows; ``command: ...`` names the command when the file does not. Under each table a line
names its command, the commit that last wrote the results file and the machine's CPU.

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


def _format(row: dict, key: str, style: str) -> str:
    value = row.get(key)
    if value is None:
        return "–"
    if style == "%":
        text = f"{100 * value:.2f}%"
        # the spread of KEY is KEY_std, or STEM_std for KEY = STEM_error (own_error: own_std)
        spread = row.get(f"{key}_std", row.get(f"{key.removesuffix('_error')}_std"))
        return text if spread is None else f"{text} ± {100 * spread:.2f}"
    if style == "x":
        return f"{value:.2f}×"
    if style == "s":
        return f"{value:.1f} s"
    if style.startswith(".") and isinstance(value, (int, float)):
        return f"{value:.{int(style[1:])}f}"
    return str(value)


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
            ["git", "log", "-1", "--format=%h", "--", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return "uncommitted" if dirty or not last else last


def _cpu(data: dict) -> str:
    for key in ("hardware", "machine"):
        found = data.get(key)
        if isinstance(found, dict) and found.get("cpu"):
            cores = found.get("cores") or found.get("cpu_count")
            return f"{found['cpu']}" + (f", {cores} cores" if cores else "")
    return "not recorded"


def render(spec: dict[str, str]) -> str:
    """The Markdown lines of one table block."""
    path = ROOT / spec["file"]
    data = json.loads(path.read_text())
    rows = _at(data, spec.get("rows", ""))
    if "where" in spec:
        key, _, wanted = spec["where"].partition("=")
        rows = [r for r in rows if str(r.get(key.strip())) == wanted.strip()]
    columns = [c.strip().partition(":")[::2] for c in spec["columns"].split(",")]
    lines = ["| " + " | ".join(key for key, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += [
        "| " + " | ".join(_format(r, key, style) for key, style in columns) + " |" for r in rows
    ]
    command = spec.get("command") or data.get("command") or "not recorded"
    lines.append("")
    lines.append(f"*`{command}` · results committed at {_commit(path)} · CPU: {_cpu(data)}*")
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
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(new)
    verb = "stale" if args.check else "rewritten"
    for path in stale:
        print(f"{verb}: {path}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
