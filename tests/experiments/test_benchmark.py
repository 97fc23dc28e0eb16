"""``magnetdml benchmark`` on digits: both protocols' numbers, the pages, paired differences,
and resuming (a second call trains nothing; a killed one goes on where it stopped)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from magnetdml.cli import main
from magnetdml.data import load_dataset
from magnetdml.experiments.benchmark import run_benchmark
from magnetdml.experiments.benchmark_report import paired_difference

FLAGS = {
    "train.threads": 1,
    "model.embedding_dim": 16,
    "eval.neighbours": 16,
    "eval.knn_k": 8,
    "train.iterations_per_epoch": 4,
}
ARGS = [
    "--dataset",
    "digits",
    "--losses",
    "magnet,softmax",
    "--trials",
    "1",
    "--seeds",
    "2",
    "--epochs",
    "1",
    "--quiet",
    *[f"--{k}={v}" for k, v in FLAGS.items()],
]


def test_paired_difference_is_the_t_interval_of_the_per_seed_differences():
    a, b = [0.10, 0.12, 0.11, 0.15], [0.08, 0.11, 0.07, 0.12]
    d = np.subtract(a, b)
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    got = paired_difference(a, b)
    assert got["mean"] == pytest.approx(d.mean()) and got["n"] == 4
    assert (got["low"], got["high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert paired_difference([0.2], [0.1])["low"] is None


def test_validation_classes_are_disjoint_from_training_and_test_classes():
    splits = load_dataset("digits", unseen_classes=0.3, val_classes=0.3)
    train, val = set(splits.train.labels), set(splits.val.labels)
    unseen, test = set(splits.unseen.labels), set(splits.test.labels)
    assert len(unseen) == 3 and len(val) == 2 and len(train) == 5
    assert not (val & train) and not (val & unseen) and not (val & test)
    with pytest.raises(ValueError, match="val_classes 0.3 and val_fraction 0.1 both ask"):
        load_dataset("digits", val_classes=0.3, val_fraction=0.1)


@pytest.fixture(scope="module")
def benchmarked(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "b"
    assert main(["benchmark", *ARGS, "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_benchmark_writes_both_protocols_under_the_projects_metric_names(benchmarked):
    results = json.loads((benchmarked / "results.json").read_text())
    seen, unseen = results["protocols"]["seen"], results["protocols"]["unseen"]
    assert set(seen["losses"]) == set(unseen["losses"]) == {"magnet", "softmax"}
    magnet = seen["losses"]["magnet"]
    assert {"error_at_1", "error_at_5", "knc_error"} <= set(magnet["mean"])
    assert "knc_error" not in seen["losses"]["softmax"]["mean"]  # no index of its own
    assert {"map_at_r", "r_precision", "precision_at_1", "recall_at_1", "nmi"} <= set(
        unseen["losses"]["softmax"]["mean"]
    )
    for protocol in (seen, unseen):
        other = next(name for name in protocol["ranking"] if name != protocol["best"])
        headline = protocol["headline"]
        per_seed = [protocol["losses"][name]["seeds"] for name in (other, protocol["best"])]
        expected = np.mean(
            [per_seed[0][s][headline] - per_seed[1][s][headline] for s in ("0", "1")]
        )
        assert protocol["differences"][other][headline]["mean"] == pytest.approx(expected)
    assert magnet["images_per_second"] > 0 and magnet["trials"] == 1
    html = (benchmarked / "report.html").read_text()
    assert "data:image/png;base64," in html and "<img" in html and 'src="figures' not in html
    assert "paired difference" in (benchmarked / "report.md").read_text()
    assert (benchmarked / "tuning" / "seen-magnet" / "study.db").is_file()


@pytest.mark.slow
def test_a_second_identical_call_trains_nothing(benchmarked, capsys):
    stamps = {p: p.stat().st_mtime_ns for p in benchmarked.rglob("metrics.json")}
    assert len(stamps) == 2 * 2 * 2 + 2 * 2  # runs, then one trial per search
    first = json.loads((benchmarked / "results.json").read_text())
    assert first["trained"] == len(stamps)
    assert main(["benchmark", *ARGS, "--out", str(benchmarked)]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    again = json.loads((benchmarked / "results.json").read_text())
    assert again["trained"] == first["trained"] and again["wall_seconds"] == first["wall_seconds"]
    assert "seen: " in capsys.readouterr().out


@pytest.mark.slow
def test_a_killed_benchmark_resumes_where_it_stopped(tmp_path):
    out = tmp_path / "b"
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parents[2] / "src"),
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "magnetdml", "benchmark", *ARGS, "--out", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first = out / "tuning" / "seen-magnet" / "trial_000" / "metrics.json"
    deadline = time.time() + 240
    while time.time() < deadline and not first.is_file():
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.is_file() and not (out / "results.json").exists()
    stamp = first.stat().st_mtime_ns
    results = run_benchmark(
        "digits",
        ["magnet", "softmax"],
        out,
        trials=1,
        seeds=2,
        epochs=1,
        overrides=FLAGS,
        log=lambda _: None,
    )
    assert first.stat().st_mtime_ns == stamp  # the finished trial was kept
    assert set(results["protocols"]) == {"seen", "unseen"}


def test_bad_benchmark_arguments_are_one_line_errors(tmp_path, capsys):
    assert (
        main(
            [
                "benchmark",
                "--dataset",
                "digits",
                "--losses",
                "magnet,magnet",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "losses must be distinct" in capsys.readouterr().err
    assert (
        main(
            [
                "benchmark",
                "--dataset",
                "digits",
                "--losses",
                "magnet",
                "--seeds",
                "0",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "seeds must be >= 1" in capsys.readouterr().err
    assert (
        main(["benchmark", "--dataset", "digits", "--losses", "magnett", "--out", str(tmp_path)])
        == 2
    )
    assert "magnett" in capsys.readouterr().err


def test_class_folds_train_each_seed_once_per_fold_and_average_its_scores(tmp_path):
    """--folds 3 (the reality check's k-fold cross-validation over classes): each trial and
    each seed trains one run per fold, validated on that fold's classes and trained on the
    others'; the folds' validation classes partition the non-test classes; a trial's value is
    the mean of its folds' errors and a seed's test scores the mean of its folds' runs."""
    from magnetdml.training import config_from_dict
    from magnetdml.training.setup import load_splits

    out = tmp_path / "folds"
    argv = [*ARGS, "--protocols", "unseen", "--folds", "3", "--seeds", "1", "--out", str(out)]
    assert main(["benchmark", *argv]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["benchmark"]["folds"] == 3
    for loss in ("magnet", "softmax"):
        runs = [out / f"unseen-{loss}-s0-f{k}" for k in range(3)]
        held, scores = [], []
        for k, run in enumerate(runs):
            config = config_from_dict(json.loads((run / "config.json").read_text()))
            assert (config.data.val_folds, config.data.val_fold) == (3, k)
            splits = load_splits(config)
            val, train = set(splits.val.labels), set(splits.train.labels)
            assert val and not val & train and not val & set(splits.unseen.labels)
            held.append(val)
            scores.append(json.loads((run / "metrics.json").read_text())["unseen"]["map_at_r"])
        assert sum(map(len, held)) == len(set().union(*held)) == 7  # digits: 3 test classes
        seed = results["protocols"]["unseen"]["losses"][loss]["seeds"]["0"]
        assert seed["map_at_r"] == pytest.approx(np.mean(scores))
        trial = out / "tuning" / f"unseen-{loss}" / "trial_000"
        assert sorted(p.name for p in trial.iterdir()) == ["fold_0", "fold_1", "fold_2"]
        folds = [
            float(json.loads(line)["tuner"]["error"])
            for k in range(3)
            for line in (trial / f"fold_{k}" / "metrics.jsonl").read_text().splitlines()[-1:]
        ]
        search = json.loads((out / "tuned.json").read_text())[f"unseen-{loss}"]
        assert search["val_error"] == pytest.approx(np.mean(folds))


def test_folds_need_the_unseen_protocol_and_two_folds(tmp_path, capsys):
    base = ["benchmark", *ARGS, "--out", str(tmp_path / "x")]
    assert main([*base, "--protocols", "seen", "--folds", "3"]) == 2
    assert "folds 3 cross-validates over classes" in capsys.readouterr().err
    assert main([*base, "--folds", "1"]) == 2
    assert "folds must be >= 2" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_a_run_of_another_configuration_says_how_to_retrain_it(tmp_path, capsys):
    """A final run trained at another configuration (as after a larger --trials found a better
    one) is refused with a fix the benchmark command has: delete that folder (there is no
    --overwrite); after that, only it trains again."""
    import shutil

    out = tmp_path / "b"
    argv = ["benchmark", *ARGS, "--losses", "softmax", "--protocols", "seen", "--seeds", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    run = out / "seen-softmax-s0"
    config = json.loads((run / "config.json").read_text())
    config["train"]["lr"] *= 2  # as if trained at an older tuned configuration
    (run / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert main([*argv, "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the stage log lines
    assert error.startswith("magnetdml benchmark: error:")
    assert "seen-softmax-s0" in error and "delete that run folder" in error
    assert "--overwrite" not in error, error
    shutil.rmtree(run)
    assert main([*argv, "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["trained"] == 1
