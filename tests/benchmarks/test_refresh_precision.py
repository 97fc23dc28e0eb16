"""The refresh-precision benchmark's summary: errors per precision, the paired difference,
and the cluster comparison."""

import pytest
from benchmark_scripts import load_script, needs_script

pytestmark = needs_script("refresh_precision.py")


def _run(precision, seed, knc, clusters=()):
    return {
        "precision": precision,
        "seed": seed,
        "knc_error": knc,
        "knn_error": knc + 0.01,
        "map_at_r": 1 - knc,
        "clusters": list(clusters),
    }


def _epoch(same, seconds_bf16):
    return {
        "same_cluster": same,
        "adjusted_rand": same - 0.01,
        "median_relative_error": 0.002,
        "pass_seconds_float32": 0.4,
        "pass_seconds_bfloat16": seconds_bf16,
    }


def test_summary_pairs_the_seeds_and_averages_the_epochs():
    module = load_script("refresh_precision.py")
    runs = [
        _run("float32", 0, 0.20, [_epoch(0.99, 0.2), _epoch(0.97, 0.25)]),
        _run("bfloat16", 1, 0.25),  # its float32 partner is missing: not paired
        _run("float32", 1, 0.10, [_epoch(0.98, 0.1)]),
        _run("bfloat16", 0, 0.23),
        _run("bfloat16", 2, 0.30),
    ]
    rows = {row["name"]: row for row in module.summarise(runs[:4])}
    assert rows["float32"]["knc_error"] == pytest.approx(0.15)
    assert rows["float32"]["knc_error_min_max"] == [0.10, 0.20]
    assert rows["bfloat16"]["seeds"] == 2
    diff = rows["bfloat16_minus_float32"]
    assert diff["seeds"] == 2
    assert diff["knc_error"] == pytest.approx((0.03 + 0.15) / 2)
    assert diff["knc_error_min_max"] == pytest.approx([0.03, 0.15])
    assert diff["map_at_r"] == pytest.approx(-(0.03 + 0.15) / 2)
    clusters = rows["clusters_of_float32_runs"]
    assert clusters["same_cluster"] == pytest.approx(0.98)
    assert clusters["same_cluster_min"] == 0.97
    assert clusters["pass_speedup"] == pytest.approx(2.0)  # median of 2, 1.6, 4
    # a seed without a float32 partner is left out of the paired row
    unpaired = {row["name"]: row for row in module.summarise(runs)}
    assert unpaired["bfloat16_minus_float32"]["seeds"] == 2
    assert unpaired["bfloat16"]["seeds"] == 3
