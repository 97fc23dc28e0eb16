"""The attributes experiment: its runs, the analysis of known curves, a real tiny run."""

import json

import numpy as np
import pytest

from magnetdml.experiments import EXPERIMENTS, RunOutcome, RunSpec
from magnetdml.experiments.analysis import chance_concentration
from magnetdml.experiments.attributes import SIZES, _mean_curve, measure_run
from magnetdml.experiments.hierarchy import cached_measurement
from magnetdml.training import apply_overrides, train
from magnetdml.training.config import Config


def test_specs_cover_every_loss_with_one_budget():
    experiment = EXPERIMENTS.get("attributes")()
    assert experiment.keep_checkpoints
    quick = experiment.specs(quick=True)
    assert [s.group["loss"] for s in quick] == ["softmax", "triplet", "magnet"]
    assert {s.group["dataset"] for s in quick} == {"omniglot"}
    for spec in quick:
        rest = {k: v for k, v in spec.overrides.items() if k != "loss.name"}
        assert rest == {k: v for k, v in quick[0].overrides.items() if k != "loss.name"}
        apply_overrides(Config(), spec.overrides).validate()
    assert {s.group["dataset"] for s in experiment.specs(quick=False)} == {"omniglot", "cifar10"}


def test_mean_curve_keeps_sizes_every_seed_measured():
    curve = _mean_curve([{"1": 0.5, "2": 0.4, "4": 0.3}, {"1": 0.7, "2": 0.2}])
    assert curve == pytest.approx({1: 0.6, 2: 0.3})


def fake_run(tmp_path, loss, seed, other, everything, chance=(0.1, 0.2)):
    name = f"omniglot-{loss}-s{seed}"
    (tmp_path / name).mkdir()
    o = RunOutcome(
        RunSpec(name, {"loss.name": loss}, {"dataset": "omniglot", "loss": loss, "seed": seed}),
        tmp_path / name,
        {"knn_error": 0.5},
        [],
    )
    values = {
        "other": {str(k): v for k, v in zip(SIZES[:3], other, strict=True)},
        "all": {str(k): v for k, v in zip(SIZES[:3], everything, strict=True)},
        "chance_other": chance[0],
        "chance_all": chance[1],
    }
    (o.run_dir / "checkpoint.pt").write_bytes(b"")
    cached_measurement(o, "attributes.json", lambda: values)
    (o.run_dir / "checkpoint.pt").unlink()  # analyse must use the cache
    return o


def test_analyse_means_curves_and_checks_the_claims(tmp_path):
    runs = [
        fake_run(tmp_path, "softmax", 0, [0.20, 0.18, 0.16], [0.5, 0.4, 0.3]),
        fake_run(tmp_path, "softmax", 1, [0.22, 0.20, 0.18], [0.5, 0.4, 0.3]),
        fake_run(tmp_path, "triplet", 0, [0.25, 0.17, 0.10], [0.6, 0.4, 0.2]),
        fake_run(tmp_path, "magnet", 0, [0.30, 0.25, 0.20], [0.7, 0.5, 0.3]),
    ]
    results = EXPERIMENTS.get("attributes")().analyse(tmp_path, {o.spec.name: o for o in runs})
    curves = results["curves"]["omniglot/other"]
    assert curves["softmax"] == pytest.approx({1: 0.21, 2: 0.19, 4: 0.17})
    assert curves["chance"] == pytest.approx(0.1)
    rows = [r for r in results["tables"][0]["rows"] if r["neighbours"] == "other"]
    assert [r["loss"] for r in rows] == ["softmax", "triplet", "magnet", "chance"]
    assert rows[2]["k=4"] == pytest.approx(0.20)
    claims = {c["claim"].split("above ")[1].split("'s")[0]: c for c in results["claims"]}
    assert claims["softmax"]["holds"] is True
    # magnet (0.30, 0.25, 0.20) vs softmax (0.21, 0.19, 0.17): gains +17.6% .. +42.9%
    assert "+17.6% to +42.9%" in claims["softmax"]["detail"]
    assert claims["triplet"]["holds"] is True
    second = tmp_path / "second"
    second.mkdir()
    runs[3] = fake_run(second, "magnet", 0, [0.30, 0.15, 0.20], [0.7, 0.5, 0.3])
    results = EXPERIMENTS.get("attributes")().analyse(second, {o.spec.name: o for o in runs})
    assert [c["holds"] for c in results["claims"]] == [False, False]  # k = 2 is below
    for figure in results["figures"]:
        assert (second / figure["path"]).stat().st_size > 1000
    assert json.loads((second / "results.json").read_text())["claims"]


def write_tiny_omniglot(folder, alphabets=3, characters=4, drawings=20, seed=0):
    """A tiny Omniglot .npz in the staged format: characters of one alphabet share a motif."""
    rng = np.random.default_rng(seed)
    classes = alphabets * characters
    motifs = rng.integers(0, 255, size=(alphabets, 28, 28))
    glyphs = rng.integers(0, 255, size=(classes, 28, 28))
    labels = np.repeat(np.arange(classes), drawings)
    images = (
        0.5 * motifs[labels // characters]
        + 0.3 * glyphs[labels]
        + 0.2 * rng.integers(0, 255, size=(len(labels), 28, 28))
    ).astype(np.uint8)
    np.savez(
        folder / "omniglot_background.npz",
        images=images,
        labels=labels.astype(np.int16),
        alphabet=np.array([f"alpha{c // characters}" for c in range(classes)]),
        character=np.array([f"character{c % characters:02d}" for c in range(classes)]),
    )


def test_measure_run_on_a_real_tiny_omniglot_run(tmp_path):
    write_tiny_omniglot(tmp_path)
    config = apply_overrides(
        Config(),
        {
            "data.name": "omniglot",
            "data.data_dir": str(tmp_path),
            "data.options": "{use_cache: false}",
            "index.clusters_per_class": 2,
            "train.epochs": 1,
            "train.iterations_per_epoch": 3,
            "train.threads": 1,
            "model.embedding_dim": 8,
            "eval.plots": False,
            "out": str(tmp_path / "run"),
        },
    )
    train(config, progress=False)
    values = measure_run(tmp_path / "run", "alphabet")
    # 12 classes x 5 test drawings: 55 other-class neighbours at most, 59 in all
    assert list(values["other"]) == ["1", "2", "4", "8", "16", "32"]
    assert list(values["all"]) == ["1", "2", "4", "8", "16", "32"]
    alphabet = np.repeat(np.arange(3), 4 * 5)
    labels = np.repeat(np.arange(12), 5)
    assert values["chance_other"] == pytest.approx(
        chance_concentration(alphabet, labels=labels, exclude_same_class=True)
    )
    assert values["chance_other"] == pytest.approx(3 / 11)  # 3 of 11 other characters
    for scope in ("other", "all"):
        assert all(0.0 <= v <= 1.0 for v in values[scope].values())
    with pytest.raises(ValueError, match="has no attribute 'superclass'; it has"):
        measure_run(tmp_path / "run", "superclass")
