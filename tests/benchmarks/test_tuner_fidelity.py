"""The tuner-fidelity benchmark's summary: agreement of sampled scores with the full one."""

import pytest
from benchmark_scripts import load_script, needs_script

pytestmark = needs_script("tuner_fidelity.py")


def _cells():
    # 3 learning rates x 2 passes; sample0_k reads 0.02 high and keeps the order, sample0_scaled
    # reads exact at pass 1 and reverses the order at pass 2
    rows = []
    for epoch, fulls in ((1, [0.3, 0.2, 0.1]), (2, [0.25, 0.15, 0.05])):
        for lr, full in zip((1e-3, 1e-2, 1e-1), fulls, strict=True):
            scaled = full if epoch == 1 else 0.3 - full
            rows.append(
                {
                    "loss": "softmax",
                    "lr": lr,
                    "epoch": epoch,
                    "full": full,
                    "sample0_k": full + 0.02,
                    "sample0_scaled": scaled,
                    "seconds_k": 0.2,
                    "seconds_scaled": 0.05,
                }
            )
    return rows


def test_summary_rows_measure_bias_and_ranking():
    module = load_script("tuner_fidelity.py")
    rows = {row["name"]: row for row in module.summarise("softmax", _cells())}
    assert set(rows) == {"softmax sample0_k", "softmax sample0_scaled"}
    k, scaled = rows["softmax sample0_k"], rows["softmax sample0_scaled"]
    assert k["mean_abs_diff"] == pytest.approx(0.02)
    assert k["bias"] == pytest.approx(0.02)
    assert k["kendall_per_pass_mean"] == pytest.approx(1.0)
    assert scaled["kendall_per_pass_mean"] == pytest.approx(0.0)  # pass 1: 1, pass 2: -1
    assert scaled["mean_abs_diff"] == pytest.approx(0.4 / 6)  # pass 2: 0.2, 0, 0.2
    assert (k["search_seconds_median"], scaled["search_seconds_median"]) == (0.2, 0.05)
