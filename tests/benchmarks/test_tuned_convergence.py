"""benchmarks/tuned_convergence.py over a classification-tuned folder (synthetic curves)."""

import json
from pathlib import Path

import pytest
from benchmark_scripts import load_script, needs_script

pytestmark = needs_script("tuned_convergence.py")


def _run(folder: Path, name: str, errors: list[float], key: str, per_pass: int) -> None:
    run = folder / name
    run.mkdir(parents=True)
    lines = [
        json.dumps({"epoch": e, "iteration": e * per_pass, key: err})
        for e, err in enumerate(errors, start=1)
    ]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (run / "metrics.json").write_text(json.dumps({key: errors[-1]}))


def test_passes_to_triplets_asymptote_and_the_speedup(tmp_path):
    runs = tmp_path / "classification-tuned"
    (runs / "x").mkdir(parents=True)  # not a run folder: ignored
    _run(runs, "fashion-mnist-triplet-s0", [0.5, 0.4, 0.3, 0.2, 0.2, 0.2], "knn_error", 100)
    _run(runs, "fashion-mnist-magnet-s0", [0.3, 0.2, 0.2, 0.2, 0.2, 0.2], "knc_error", 90)
    _run(runs, "fashion-mnist-softmax-s0", [0.6, 0.5, 0.4, 0.3, 0.3, 0.3], "knn_error", 100)
    (runs / "results.json").write_text(json.dumps({"command": "c", "hardware": {"cpu": "x"}}))
    out = tmp_path / "out"
    script = load_script("tuned_convergence.py")
    assert script.main(["--runs", str(runs), "--datasets", "fashion-mnist", "--out", str(out)]) == 0
    rows = {
        r["loss"]: r for r in json.loads((out / "results.json").read_text())["tables"][0]["rows"]
    }
    assert rows["triplet"]["pass_reached"] == 4 and rows["triplet"]["iteration_reached"] == 400
    assert rows["magnet"]["pass_reached"] == 2 and rows["magnet"]["speedup"] == pytest.approx(
        400 / 180
    )
    assert rows["softmax"]["pass_reached"] is None  # never at triplet's 0.2
    with pytest.raises(SystemExit, match="no finished classification-tuned runs"):
        script.main(["--runs", str(runs), "--datasets", "cifar10", "--out", str(out)])
