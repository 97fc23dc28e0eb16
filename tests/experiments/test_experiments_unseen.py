"""unseen.analyse on fake outcomes: NMI / F1 means, claims, the Omniglot alphabet split."""

from __future__ import annotations

import pytest

from magnetdml.experiments import RunOutcome, RunSpec
from magnetdml.experiments.unseen import Unseen

NMI = {
    "softmax": (0.40, 0.44),
    "triplet": (0.50, 0.52),
    "magnet": (0.60, 0.58),
    "lifted": (0.55, 0.53),
    "contrastive": (0.45, 0.47),
}


def fake_runs(tmp_path, nmi=NMI):
    runs = {}
    for loss, values in nmi.items():
        for seed, value in enumerate(values):
            spec = RunSpec(f"om-{loss}-s{seed}", {}, {"dataset": "om", "loss": loss, "seed": seed})
            runs[spec.name] = RunOutcome(
                spec,
                tmp_path,
                {"knn_error": 0.1, "unseen": {"nmi": value, "f1": value / 2, "recall_at_1": 0.9}},
                [],
            )
    return runs


def test_rows_and_claims(tmp_path):
    results = Unseen().analyse(tmp_path, fake_runs(tmp_path))
    rows = {r["loss"]: r for r in results["tables"][0]["rows"]}
    assert rows["magnet"]["nmi"] == pytest.approx(0.59)
    assert rows["magnet"]["f1"] == pytest.approx(0.295)
    assert rows["triplet"]["nmi_std"] == pytest.approx(0.0141421356)
    assert [c["holds"] for c in results["claims"]] == [True, True, True]
    assert (tmp_path / "unseen_nmi_om.png").is_file()


def test_claims_fail_on_other_orders(tmp_path):
    nmi = {**NMI, "magnet": (0.30, 0.30), "contrastive": (0.9, 0.9)}
    claims = Unseen().analyse(tmp_path, fake_runs(tmp_path, nmi))["claims"]
    assert [c["holds"] for c in claims] == [False, False, False]
    assert claims[2]["detail"] == "best: contrastive"


def test_missing_unseen_metrics_are_unmeasurable(tmp_path):
    runs = fake_runs(tmp_path, {"magnet": (0.5,), "lifted": (0.4,)})
    for outcome in runs.values():
        del outcome.summary["unseen"]
    results = Unseen().analyse(tmp_path, runs)
    assert results["tables"][0]["rows"][0]["nmi"] is None
    assert [c["holds"] for c in results["claims"]] == [None, None, None]
    assert results["figures"] == []


def test_omniglot_holds_out_whole_alphabets():
    specs = Unseen().specs(quick=False)
    omniglot = [s for s in specs if s.group["dataset"] == "omniglot"]
    assert len(omniglot) == 5
    assert all("unseen_alphabets" in s.overrides["data.options"] for s in omniglot)
    assert all("data.unseen_classes" not in s.overrides for s in omniglot)
    others = [s for s in specs if s.group["dataset"] != "omniglot"]
    assert all(s.overrides["data.unseen_classes"] == 0.3 for s in others)
