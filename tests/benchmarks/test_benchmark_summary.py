"""benchmarks/benchmark_summary.py over copies of the committed digits benchmark."""

import json
import shutil
from pathlib import Path

import pytest
from benchmark_scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "benchmarks" / "results" / "benchmark" / "digits"
pytestmark = pytest.mark.skipif(
    not (DIGITS / "results.json").is_file(), reason="outside the repository (no benchmarks/)"
)


def test_ranks_cells_and_magnets_standing(tmp_path):
    for name in ("digits-a", "digits-b"):
        (tmp_path / name).mkdir()
        shutil.copy(DIGITS / "results.json", tmp_path / name / "results.json")
    out = tmp_path / "summary.json"
    folders = [str(tmp_path / "digits-a"), str(tmp_path / "digits-b")]
    assert load_script("benchmark_summary.py").main([*folders, "--out", str(out)]) == 0
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
        load_script("benchmark_summary.py").main([str(tmp_path), "--out", str(out)])
