"""benchmarks/benchmark_summary.py over copies of the committed digits benchmark."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "benchmarks" / "results" / "benchmark" / "digits"
pytestmark = pytest.mark.skipif(
    not (DIGITS / "results.json").is_file(), reason="outside the repository (no benchmarks/)"
)


def _script():
    path = ROOT / "benchmarks" / "benchmark_summary.py"
    spec = importlib.util.spec_from_file_location("benchmark_summary", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ranks_cells_and_magnets_standing(tmp_path):
    for name in ("digits-a", "digits-b"):
        (tmp_path / name).mkdir()
        shutil.copy(DIGITS / "results.json", tmp_path / name / "results.json")
    out = tmp_path / "summary.json"
    folders = [str(tmp_path / "digits-a"), str(tmp_path / "digits-b")]
    assert _script().main([*folders, "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    source = json.loads((DIGITS / "results.json").read_text())["protocols"]["seen"]
    assert summary["columns"] == ["a", "b"]
    rows = {r["loss"]: r for r in summary["rows"]}
    # the best loss of the folder ranks first in both, Magnet where its mean puts it
    assert rows[source["best"]]["mean_rank"] == 1.0 and summary["rows"][0]["loss"] == source["best"]
    assert rows["magnet"]["a"] == rows["magnet"]["b"]
    assert rows["magnet (kNC)"]["mean_rank"] is None
    assert (
        summary["magnet"][0]["magnet_minus_best"] == source["differences"]["magnet"]["error_at_1"]
    )
    assert summary["magnet"][0]["magnet_rank"] == source["ranking"].index("magnet") + 1
    with pytest.raises(SystemExit, match="no results.json"):
        _script().main([str(tmp_path), "--out", str(out)])
