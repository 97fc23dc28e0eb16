"""benchmarks/attribute_concentration.py over a real (tiny) benchmark of a user's image tree."""

import json
from pathlib import Path

import numpy as np
import pytest
from benchmark_scripts import load_script, needs_script
from PIL import Image

from magnetdml.experiments.analysis import chance_concentration
from magnetdml.experiments.benchmark import run_benchmark
from magnetdml.training.runs import load_run

pytestmark = needs_script("attribute_concentration.py")


def _tree(root: Path) -> Path:
    """Two 'alphabets' of three 'characters', 10 drawings each; alphabets differ in style."""
    rng = np.random.default_rng(0)
    for a, alphabet in enumerate(("Korean", "Latin")):
        for c in range(3):
            folder = root / alphabet / f"character{c}"
            folder.mkdir(parents=True)
            for i in range(10):
                pixels = rng.random((8, 8)) * 80 + 120 * a
                pixels[c * 2 : c * 2 + 3] += 60
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.mark.slow
def test_curves_chance_and_pairs_over_a_benchmark(tmp_path):
    data = _tree(tmp_path / "my drawings")
    out = tmp_path / "bench"
    run_benchmark(
        "image-folder",
        ["softmax", "magnet"],
        out,
        data_dir=str(data),
        trials=1,
        seeds=2,
        epochs=1,
        protocols=("seen",),
        overrides={
            "data.options": "{class_level: leaf, size: 8}",
            "model.backbone": "mlp",
            "train.threads": 1,
        },
        log=lambda _m: None,
    )
    script = load_script("attribute_concentration.py")
    results_file = tmp_path / "attributes.json"
    assert script.main([str(out), "--attribute", "parent", "--out", str(results_file)]) == 0
    results = json.loads(results_file.read_text())
    rows = {r["loss"]: r for r in results["rows"]}
    assert set(rows) == {"softmax", "magnet"} and rows["magnet"]["seeds"] == 2
    # the machine that trained the models (the docs' tables name it)
    assert results["hardware"] == json.loads((out / "results.json").read_text())["hardware"]
    # the chance level is the random-embedding expectation over the run's own test split
    test = load_run(out / "seen-magnet-s0").splits.test
    expected = chance_concentration(
        test.attributes["parent"], labels=test.labels, exclude_same_class=True
    )
    assert rows["magnet"]["chance"] == pytest.approx(expected)
    for row in rows.values():
        assert all(0.0 <= row[f"k{k}"] <= 1.0 for k in (1, 2, 4) if f"k{k}" in row)
    overall = {r["loss"]: r for r in results["overall"]}
    pair = overall["softmax"]["k1_vs_magnet"]
    assert pair["n"] == 2 and pair["low"] <= pair["mean"] <= pair["high"]
    # the curves are cached per run: without the models, a rerun gives the same file
    for checkpoint in out.glob("seen-*/checkpoint.pt"):
        checkpoint.unlink()
    again = tmp_path / "again.json"
    assert script.main([str(out), "--attribute", "parent", "--out", str(again)]) == 0
    assert json.loads(again.read_text())["rows"] == results["rows"]


def test_a_folder_without_runs_is_one_line(tmp_path, capsys):
    assert (
        load_script("attribute_concentration.py").main(
            [str(tmp_path), "--out", str(tmp_path / "a.json")]
        )
        == 2
    )
    assert "no finished seen-protocol runs" in capsys.readouterr().err
