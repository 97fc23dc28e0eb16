"""The result tables in README.md and docs/ are the committed results files, rendered: a
table whose results changed (or whose results file was rewritten) fails here until
``python benchmarks/docs_tables.py`` regenerates it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "docs_tables.py"


def _module():
    spec = importlib.util.spec_from_file_location("docs_tables", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _git_history() -> bool:
    try:
        shallow = subprocess.run(
            ["git", "rev-parse", "--is-shallow-repository"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return False
    return shallow == "false"


@pytest.mark.skipif(not SCRIPT.is_file(), reason="outside the repository (e.g. an sdist)")
def test_a_block_renders_rows_formats_spreads_and_provenance(tmp_path, monkeypatch):
    tables = _module()
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    (tmp_path / "r.json").write_text(
        json.dumps(
            {
                "command": "magnetdml x",
                "hardware": {"cpu": "Test CPU", "cores": 2},
                "tables": [
                    {
                        "rows": [
                            {"loss": "magnet", "error": 0.1234, "error_std": 0.01, "n": 3},
                            {"loss": "softmax", "error": 0.2, "n": None},
                        ]
                    }
                ],
            }
        )
    )
    text = (
        "a\n<!-- table: r.json | rows: tables.0.rows | columns: loss, error:%, n -->\n"
        "old\n<!-- /table -->\nb\n"
    )
    out = tables.update(text)
    assert "| loss | error | n |" in out and "| magnet | 12.34% ± 1.00 | 3 |" in out
    assert "| softmax | 20.00% | – |" in out and "old" not in out
    assert "*`magnetdml x` · results committed at" in out and "CPU: Test CPU, 2 cores*" in out
    assert tables.update(out) == out  # regenerating a fresh table changes nothing
    filtered = tables.update(text.replace("columns:", "where: loss=softmax | columns:"))
    assert "| magnet |" not in filtered and "| softmax |" in filtered


@pytest.mark.skipif(
    not SCRIPT.is_file() or not _git_history(),
    reason="needs the repository with its full git history",
)
def test_every_committed_table_matches_its_results():
    assert _module().main(["--check"]) == 0, (
        "a docs table is stale: run python benchmarks/docs_tables.py and commit the result"
    )
