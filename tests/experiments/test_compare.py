"""``compare``: same-budget training of several losses, the report, the markers, resuming."""

import csv
import json

import pytest

import magnetdml.experiments.compare as compare_module
from magnetdml.cli import main
from magnetdml.experiments.compare import _mean_curve, compare
from magnetdml.experiments.compare_report import first_reached
from magnetdml.experiments.compare_report import summary_table as _table
from magnetdml.training import Config, apply_overrides, parallel

LOSSES = ["magnet", "triplet", "softmax"]
FAST = {
    "train.epochs": 2,
    "train.iterations_per_epoch": 4,
    "train.threads": 1,
    "eval.plots": False,
    "sampler.classes_per_batch": 8,
    "sampler.examples_per_class": 6,
}


def fast_config(**overrides):
    return apply_overrides(Config(), {**FAST, **overrides})


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return compare(fast_config(), LOSSES, tmp_path_factory.mktemp("compare"))


def history(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_every_loss_trains_the_same_budget_in_its_own_folder(result):
    for loss in LOSSES:
        run = result.out / loss / "seed0"
        summary = json.loads((run / "metrics.json").read_text())
        assert (summary["loss"], summary["iterations"], summary["images"]) == (loss, 8, 8 * 48)
        assert [r["iteration"] for r in history(run)] == [4, 8]


@pytest.mark.slow
def test_curves_are_each_losses_own_test_error_per_epoch(result):
    for loss, metric in (
        ("magnet", "knc_error"),
        ("triplet", "knn_error"),
        ("softmax", "knn_error"),
    ):
        expected = [(r["iteration"], r[metric]) for r in history(result.out / loss / "seed0")]
        assert result.curves[loss] == expected


@pytest.mark.slow
def test_markers_are_the_first_iteration_reaching_triplets_final_error(result):
    target = result.curves["triplet"][-1][1]
    for entry in result.table:
        curve = result.curves[entry["loss"]]
        reached = [it for it, error in curve if error <= target]
        assert entry["reached"] == (reached[0] if reached else None)
        if entry["reached"]:
            assert entry["speedup"] == pytest.approx(8 / entry["reached"])
    triplet = next(e for e in result.table if e["loss"] == "triplet")
    assert triplet["reached"] is not None and triplet["reached"] <= 8


@pytest.mark.slow
def test_report_files_hold_the_table_and_the_plot(result):
    rows = list(csv.DictReader(open(result.files["csv"])))
    assert [r["loss"] for r in rows] == LOSSES
    for row, run in zip(rows, result.runs, strict=True):
        assert float(row["knc_error"]) == pytest.approx(run["knc_error"])
        assert float(row["images_per_second"]) == pytest.approx(run["images_per_second"])
    text = result.files["md"].read_text()
    assert "| loss | kNC error | kNN error | error@5 | MAP@R | NMI | F1 |" in text
    assert "iterations to triplet's final error" in text
    assert "2 epochs x 4 iterations x 48 images = 384 images" in text
    assert all(f"| {loss} (" in text for loss in LOSSES)
    assert result.files["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(result.files["json"].read_text())
    assert saved["curves"]["magnet"] == [list(p) for p in result.curves["magnet"]]
    assert saved["hardware"]["torch_threads"] == 1


@pytest.mark.slow
def test_rerun_skips_finished_losses_and_resumes_unfinished_ones(result, monkeypatch):
    calls = []
    real_train = parallel.train

    def recording_train(config, **kwargs):
        calls.append(config.loss.name)
        return real_train(config, **kwargs)

    monkeypatch.setattr(parallel, "train", recording_train)
    (result.out / "softmax" / "seed0" / "metrics.json").unlink()  # as if it was interrupted
    again = compare(fast_config(), LOSSES, result.out)
    assert calls == ["softmax"]
    assert again.curves == result.curves
    assert [e["knc_error"] for e in again.table] == [e["knc_error"] for e in result.table]


@pytest.mark.slow
def test_parallel_jobs_give_the_same_table(result, tmp_path):
    parallel_result = compare(fast_config(), LOSSES, tmp_path, jobs=2)
    assert parallel_result.curves == result.curves
    assert [e["knc_error"] for e in parallel_result.table] == [e["knc_error"] for e in result.table]


@pytest.mark.slow
def test_a_finished_run_with_other_flags_is_not_silently_reused(result):
    with pytest.raises(ValueError, match="different config.*--overwrite"):
        compare(fast_config(**{"loss.alpha": 2.0}), ["magnet"], result.out)


def test_table_reports_mean_and_sample_spread_over_seeds():
    runs = [
        {
            "loss": "a",
            "seed": s,
            "iterations": 10,
            "curve_metric": "knn_error",
            **dict.fromkeys([k for k, _ in compare_module.COLUMNS], v),
        }
        for s, v in ((0, 0.1), (1, 0.3))
    ]
    curves = {"a": _mean_curve([[(5, 0.4), (10, 0.2)], [(5, 0.2), (10, 0.1)]])}
    assert curves["a"] == [(5, pytest.approx(0.3)), (10, pytest.approx(0.15))]
    (entry,) = _table(["a"], runs, curves, reference="triplet")
    assert entry["knc_error"] == pytest.approx(0.2)
    assert entry["knc_error_std"] == pytest.approx(0.1414213562)
    assert entry["reached"] is None and entry["final_error"] == pytest.approx(0.15)
    assert first_reached([(1, 0.5), (2, 0.3), (3, 0.2)], 0.3) == 2
    assert first_reached([(1, 0.5)], 0.3) is None


@pytest.mark.parametrize(
    ("losses", "overrides", "match"),
    [
        (["magnet", "nope"], {}, "unknown loss 'nope'; valid names: .*magnet"),
        ([], {}, "at least one loss"),
        (["magnet", "magnet"], {}, "must not repeat"),
        (
            ["magnet", "triplet"],
            {"sampler.examples_per_class": 4},
            "same number of images per iteration.*magnet: .* = 48; triplet: .* = 32",
        ),
    ],
)
def test_bad_arguments_fail_before_training(tmp_path, losses, overrides, match):
    with pytest.raises(ValueError, match=match):
        compare(fast_config(**overrides), losses, tmp_path)
    assert not any(tmp_path.iterdir())


def test_cli_reports_unknown_losses_and_bad_seeds(tmp_path, capsys):
    assert main(["compare", "--losses", "magnet,bogus", "--out", str(tmp_path)]) == 2
    assert "unknown loss 'bogus'" in capsys.readouterr().err
    assert main(["compare", "--losses", "magnet", "--seeds", "0,x", "--out", str(tmp_path)]) == 2
    assert "--seeds must be a comma-separated list of int" in capsys.readouterr().err
