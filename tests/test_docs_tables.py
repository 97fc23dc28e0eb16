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


@pytest.mark.skipif(not SCRIPT.is_file(), reason="outside the repository (e.g. an sdist)")
def test_dict_rows_nested_keys_seed_folding_and_values(tmp_path, monkeypatch):
    tables = _module()
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    variants = {
        "magnet": {"summary": {"error": 0.10}, "params": {"train.lr": 0.0123456}},
        "magnet-seed1": {"summary": {"error": 0.12}, "params": {"train.lr": 0.0123456}},
        "triplet": {"summary": {"error": 0.2}, "range": [1.5, 2.25]},
    }
    (tmp_path / "r.json").write_text(
        json.dumps({"variants": variants, "setup": {"hardware": {"cpus": 2}}})
    )
    spec = "r.json | rows: variants | fold: -seed | columns: name, seeds, summary.error:%"
    out = tables.update(f"<!-- table: {spec} -->\n<!-- /table -->\n")
    assert "| name | seeds | error |" in out  # a nested key's header is its last part
    assert "| magnet | 2 | 11.00% ± 1.41 |" in out and "magnet-seed1" not in out
    assert "| triplet | 1 | 20.00% |" in out and "CPU: not recorded, 2 cores*" in out
    spec = "r.json | rows: variants | command: c | columns: name, params, range:x"
    out = tables.update(f"<!-- table: {spec} -->\n<!-- /table -->\n")
    assert "| magnet | lr 0.0123 | – |" in out and "| triplet | – | 1.50× / 2.25× |" in out


@pytest.mark.skipif(
    not SCRIPT.is_file() or not _git_history(),
    reason="needs the repository with its full git history",
)
def test_a_file_at_a_commit_is_read_as_committed_then(tmp_path, monkeypatch):
    tables = _module()
    monkeypatch.setattr(tables, "ROOT", tmp_path)

    def git(*args):
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    git("init", "-q")
    (tmp_path / "r.json").write_text(json.dumps({"rows": [{"error": 0.25}]}))
    git("add", "r.json")
    git("commit", "-q", "-m", "old")
    old = git("rev-parse", "--short", "HEAD")
    (tmp_path / "r.json").write_text(json.dumps({"rows": [{"error": 0.5}]}))
    marker = f"<!-- table: r.json@{old} | rows: rows | columns: error:% -->\n<!-- /table -->\n"
    out = tables.update(marker)
    assert "| 25.00% |" in out and f"results committed at {old} ·" in out
    assert "| 50.00% |" in tables.update(marker.replace(f"@{old}", ""))
    with pytest.raises(SystemExit, match="not in git"):
        tables.update(marker.replace(old, "0000000"))


@pytest.mark.skipif(
    not SCRIPT.is_file() or not _git_history(),
    reason="needs the repository with its full git history",
)
def test_the_check_does_not_depend_on_gits_abbreviation_length(monkeypatch, capsys):
    # git's %h grows with the object count, so CI's clone printed longer hashes than the
    # one the tables were written in; the provenance must not change with it.
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "core.abbrev")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "12")
    assert _module().main(["--check"]) == 0, capsys.readouterr().out


def test_a_stale_check_names_the_first_line_that_differs():
    tables = _module() if SCRIPT.is_file() else pytest.skip("outside the repository")
    said = tables._first_difference("a\nb\nc", "a\nB\nc")
    assert "line 2" in said and "'b'" in said and "'B'" in said
