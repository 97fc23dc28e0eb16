"""The training-overhead benchmark's summary rows: medians, and the ratio to softmax within
each round as well as of the medians."""

from benchmark_scripts import load_script, needs_script

pytestmark = needs_script("training_overhead.py")


def _run(*speeds):
    return {
        "repeats": [{"images_per_second": s, "knc_error": 0.2, "knn_error": 0.1} for s in speeds]
    }


def test_a_row_gives_the_median_ratio_and_its_range_over_the_rounds():
    script = load_script("training_overhead.py")
    # softmax slows in round 2 (a slow phase of the host), and Magnet with it
    runs = {"softmax": _run(2000, 1000, 2000), "magnet-fixed": _run(1800, 950, 1700)}
    speed = {"softmax": 2000.0, "magnet-fixed": 1700.0}
    ratios = {"magnet-fixed": 0.85}
    row = script._summary_row("magnet-fixed", runs["magnet-fixed"], speed, ratios, 0.1, runs)
    assert row["ratio_to_softmax"] == 0.85
    # paired by round: 0.9, 0.95, 0.85 (not the 0.475 an unpaired slowest/fastest would give)
    assert row["ratio_to_softmax_by_round_min_max"] == [0.85, 0.95]
    assert row["images_per_second_min_max"] == [950, 1800]
    base = script._summary_row("softmax", runs["softmax"], speed, ratios, None, runs)
    assert base["ratio_to_softmax_by_round_min_max"] is None
