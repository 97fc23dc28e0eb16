"""classification.analyse on fake outcomes: means, spreads, relative error, claims, files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from magnetdml.experiments import RunOutcome, RunSpec
from magnetdml.experiments.classification import Classification, relative_error

# (loss, seed) -> (kNC error, kNN error)
ERRORS = {
    ("softmax", 0): (0.30, 0.20),
    ("softmax", 1): (0.32, 0.22),
    ("triplet", 0): (0.25, 0.18),
    ("triplet", 1): (0.27, 0.22),
    ("magnet", 0): (0.11, 0.15),
    ("magnet", 1): (0.13, 0.17),
}


def fake_runs(tmp_path: Path) -> dict[str, RunOutcome]:
    runs = {}
    for (loss, seed), (knc, knn) in ERRORS.items():
        spec = RunSpec(f"fm-{loss}-s{seed}", {}, {"dataset": "fm", "loss": loss, "seed": seed})
        runs[spec.name] = RunOutcome(
            spec, tmp_path / spec.name, {"knc_error": knc, "knn_error": knn}, []
        )
    return runs


def test_table_uses_each_loss_protocol_and_relative_error_against_triplet(tmp_path):
    results = Classification().analyse(tmp_path, fake_runs(tmp_path))
    rows = {r["loss"]: r for r in results["tables"][0]["rows"]}
    # Magnet is scored by kNC (0.12), triplet and softmax by soft kNN (0.20, 0.21)
    assert rows["magnet"]["own_error"] == pytest.approx(0.12)
    assert rows["triplet"]["own_error"] == pytest.approx(0.20)
    assert rows["softmax"]["own_error"] == pytest.approx(0.21)
    assert rows["magnet"]["relative_vs_triplet"] == pytest.approx((0.12 - 0.20) / 0.20)
    assert rows["triplet"]["relative_vs_triplet"] == pytest.approx(0.0)
    assert rows["magnet"]["knn_error"] == pytest.approx(0.16)
    assert rows["triplet"]["knn_std"] == pytest.approx(0.0282842712)  # sample std of .18, .22
    assert rows["magnet"]["seeds"] == 2
    claims = {c["claim"]: c["holds"] for c in results["claims"]}
    assert claims["fm: Magnet's error is below softmax's"] is True
    assert claims["fm: Magnet's error is 30-40% (or more) below triplet's"] is True  # -40%
    assert (tmp_path / "errors_fm.png").is_file()
    assert json.loads((tmp_path / "results.json").read_text())["tables"] == json.loads(
        json.dumps(results["tables"])
    )


def test_claim_fails_when_magnet_is_only_slightly_better(tmp_path):
    runs = fake_runs(tmp_path)
    for name in ("fm-magnet-s0", "fm-magnet-s1"):
        runs[name].summary["knc_error"] = 0.19  # 5% below triplet's 0.20
    claims = Classification().analyse(tmp_path, runs)["claims"]
    assert [c["holds"] for c in claims] == [True, False]
    assert "-5.0%" in claims[1]["detail"]


def test_missing_loss_makes_claims_unmeasurable(tmp_path):
    runs = {k: v for k, v in fake_runs(tmp_path).items() if "triplet" not in k}
    results = Classification().analyse(tmp_path, runs)
    assert [c["holds"] for c in results["claims"]] == [True, None]
    assert all(r["relative_vs_triplet"] is None for r in results["tables"][0]["rows"])


def test_relative_error():
    assert relative_error(0.06, 0.1) == pytest.approx(-0.4)
    assert relative_error(None, 0.1) is None and relative_error(0.1, 0.0) is None


def test_specs_share_budget_and_backbone_per_dataset():
    specs = Classification().specs(quick=False)
    assert len(specs) == 3 * 3 * 3
    for dataset in ("mnist", "fashion-mnist", "cifar10"):
        chosen = [s.overrides for s in specs if s.group["dataset"] == dataset]
        keys = ("model.backbone", "train.epochs", "train.iterations_per_epoch")
        assert len({tuple(o[k] for k in keys) for o in chosen}) == 1
        for o in chosen:  # 48 images per step for every loss
            assert (
                o["sampler.clusters_per_batch"] * o["sampler.examples_per_cluster"]
                == o["sampler.classes_per_batch"] * o["sampler.examples_per_class"]
                == 48
            )
