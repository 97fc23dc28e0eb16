"""clusters.analyse on fake outcomes: the K sweep, the adaptive index, curves, claims."""

from __future__ import annotations

import pytest

from magnetdml.experiments import RunOutcome, RunSpec
from magnetdml.experiments.clusters import Clusters, clusters_curve

KNC = {1: 0.20, 2: 0.15, 4: 0.12, 8: 0.14, None: 0.11}  # None: agglomerative


def history(per_class):
    return [
        {
            "epoch": e + 1,
            "iteration": 10 * (e + 1),
            "clusters_per_class": {"mean": m, "min": int(m), "max": int(m) + 1},
        }
        for e, m in enumerate(per_class)
    ]


def fake_runs(tmp_path, knc=KNC):
    runs = {}
    for k, error in knc.items():
        method = "kmeans" if k else "agglomerative"
        spec = RunSpec(
            f"fm-{k or 'agg'}", {}, {"dataset": "fm", "method": method, "k": k, "seed": 0}
        )
        run_dir = tmp_path / spec.name
        run_dir.mkdir()
        if k == 4:
            (run_dir / "tsne_final.png").write_bytes(b"png")
        per_class = [k, k, k] if k else [3.0, 4.5, 5.0]
        runs[spec.name] = RunOutcome(
            spec,
            run_dir,
            {"knc_error": error, "knn_error": 0.2, "clusters": 10 * (k or 5)},
            history(per_class),
        )
    return runs


def test_rows_sorted_by_k_with_adaptive_last(tmp_path):
    results = Clusters().analyse(tmp_path, fake_runs(tmp_path))
    rows = results["tables"][0]["rows"]
    assert [r["index"] for r in rows] == [
        "k-means K=1",
        "k-means K=2",
        "k-means K=4",
        "k-means K=8",
        "agglomerative",
    ]
    assert rows[-1]["final_clusters_per_class"] == pytest.approx(5.0)
    assert rows[-1]["clusters_per_class_range"] == "3.00-5.00"
    assert rows[2]["knc_error"] == pytest.approx(0.12)
    assert [c["holds"] for c in results["claims"]] == [True, True]
    assert "K=4 12.00%" in results["claims"][1]["detail"]
    paths = [f["path"] for f in results["figures"]]
    assert paths == ["clusters_per_class.png", "error_vs_k.png", "fm-4/tsne_final.png"]
    assert (tmp_path / "error_vs_k.png").is_file()
    assert (tmp_path / "clusters_per_class.png").is_file()


def test_claims_fail_when_one_cluster_wins(tmp_path):
    knc = {1: 0.10, 2: 0.15, 4: 0.12, None: 0.13}
    claims = Clusters().analyse(tmp_path, fake_runs(tmp_path, knc))["claims"]
    assert [c["holds"] for c in claims] == [False, False]


def test_clusters_curve_skips_records_without_index():
    records = history([2.0, 3.0]) + [{"epoch": 3, "iteration": 30}]
    assert clusters_curve(records) == [(10, 2.0), (20, 3.0)]


def test_specs_sweep_k_and_agglomerative():
    specs = Clusters().specs(quick=False)
    ks = sorted({s.group["k"] for s in specs if s.group["k"]})
    assert ks == [1, 2, 4, 8, 16]
    agglomerative = [s for s in specs if s.group["method"] == "agglomerative"]
    assert agglomerative and all(
        s.overrides["index.method"] == "agglomerative" for s in agglomerative
    )
    assert all(s.overrides["loss.name"] == "magnet" for s in specs)
    assert all(s.overrides["sampler.clusters_per_batch"] <= 9 for s in specs)  # K = 1: 9 impostors


def seeded_runs(tmp_path, knc_by_k: dict[int, list[float]]):
    """K -> kNC error per seed (seeds 0, 1, 2, ...)."""
    runs = {}
    for k, errors in knc_by_k.items():
        for seed, error in enumerate(errors):
            spec = RunSpec(
                f"fm-{k}-s{seed}", {}, {"dataset": "fm", "method": "kmeans", "k": k, "seed": seed}
            )
            (tmp_path / spec.name).mkdir()
            summary = {"knc_error": error, "knn_error": 0.2, "clusters": 10 * k}
            runs[spec.name] = RunOutcome(spec, tmp_path / spec.name, summary, history([k]))
    return runs


def test_each_k_is_compared_with_one_cluster_paired_by_seed(tmp_path):
    # K = 2 is 1 point below K = 1 on every seed: a zero-width interval, clearly below
    runs = seeded_runs(tmp_path, {1: [0.30, 0.32, 0.31], 2: [0.29, 0.31, 0.30]})
    results = Clusters().analyse(tmp_path, runs)
    one, two = results["tables"][0]["rows"]
    assert "knc_vs_k1" not in one
    assert two["knc_vs_k1"] == "-1.00 [-1.00, -1.00]"
    assert results["claims"][0]["holds"] is True
    assert "K=2 vs K=1 -1.00" in results["claims"][0]["detail"]


def test_a_gain_inside_the_seed_noise_is_not_called_a_win(tmp_path):
    # K = 2 is lower on average (-0.5 points) but higher on one seed: unresolved
    runs = seeded_runs(tmp_path, {1: [0.31, 0.31, 0.31], 2: [0.295, 0.300, 0.320]})
    results = Clusters().analyse(tmp_path, runs)
    difference = results["tables"][0]["rows"][1]["knc_vs_k1_difference"]
    assert difference["mean"] == pytest.approx(-0.005)
    assert difference["low"] < 0 < difference["high"]
    assert results["claims"][0]["holds"] is None
