"""convergence.analyse on fake histories: asymptote, iterations reached, speed-up."""

from __future__ import annotations

import pytest

from magnetdml.experiments import RunOutcome, RunSpec
from magnetdml.experiments.convergence import Convergence, asymptote, mean_curve, reached

TRIPLET = [0.50, 0.40, 0.30, 0.21, 0.20, 0.19]  # kNN errors at iterations 10..60
MAGNET = [0.22, 0.18, 0.15, 0.14, 0.13, 0.13]  # kNC errors
SOFTMAX = [0.60, 0.50, 0.45, 0.40, 0.35, 0.30]


def history(errors, key, noise_key, noise=0.9):
    return [
        {"epoch": i + 1, "iteration": 10 * (i + 1), key: e, noise_key: noise}
        for i, e in enumerate(errors)
    ]


def fake_runs(tmp_path):
    runs = {}
    for loss, errors in (("triplet", TRIPLET), ("magnet", MAGNET), ("softmax", SOFTMAX)):
        key, other = ("knc_error", "knn_error") if loss == "magnet" else ("knn_error", "knc_error")
        spec = RunSpec(f"fm-{loss}", {}, {"dataset": "fm", "loss": loss, "seed": 0})
        runs[spec.name] = RunOutcome(spec, tmp_path / spec.name, {}, history(errors, key, other))
    return runs


def test_speedup_against_triplet_asymptote(tmp_path):
    results = Convergence().analyse(tmp_path, fake_runs(tmp_path))
    rows = {r["loss"]: r for r in results["tables"][0]["rows"]}
    target = (0.21 + 0.20 + 0.19) / 3  # mean of triplet's last 3 points
    assert rows["triplet"]["triplet_asymptotic_error"] == pytest.approx(target)
    assert rows["triplet"]["iteration_reached"] == 50  # 0.20 <= 0.2 (0.21 is not)
    assert rows["magnet"]["iteration_reached"] == 20  # 0.18
    assert rows["magnet"]["speedup"] == pytest.approx(50 / 20)
    assert rows["softmax"]["iteration_reached"] is None and rows["softmax"]["speedup"] is None
    assert rows["magnet"]["final_error"] == pytest.approx(0.13)
    claim = results["claims"][0]
    assert claim["holds"] is False and "2.5x" in claim["detail"]  # 2.5x < 5x
    assert results["curves"]["fm"]["magnet"][0] == [10, 0.22]
    assert (tmp_path / "error_curves_fm.png").is_file()


def test_claim_holds_when_magnet_is_fast(tmp_path):
    runs = fake_runs(tmp_path)
    runs["fm-magnet"].history = history([0.19] + MAGNET[1:], "knc_error", "knn_error")
    results = Convergence().analyse(tmp_path, runs)
    assert results["claims"][0]["holds"] is True  # 50 / 10 = 5x


def test_curve_helpers():
    a, b = [(10, 0.4), (20, 0.2), (30, 0.1)], [(10, 0.2), (20, 0.4)]
    assert mean_curve([a, b]) == [(10, pytest.approx(0.3)), (20, pytest.approx(0.3))]
    assert asymptote(a, tail=2) == pytest.approx(0.15) and asymptote([]) is None
    assert reached(a, 0.2) == 20 and reached(a, 0.05) is None and reached([], 0.1) is None


def test_specs_evaluate_every_block():
    specs = Convergence().specs(quick=True)
    assert {s.group["loss"] for s in specs} == {"softmax", "triplet", "magnet"}
    assert all(s.overrides["eval.every"] == 1 for s in specs)
