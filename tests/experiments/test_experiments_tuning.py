"""An experiment's tuning stage: one search per group, its best trial trained by the group's
runs, resumable, reusable from another folder (``--tuned``); and classification-tuned's plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from magnetdml.cli import main
from magnetdml.experiments import EXPERIMENTS, Experiment, RunSpec, run_experiment, save_results
from magnetdml.experiments.classification_tuned import BUDGET, TunedClassification
from magnetdml.experiments.tuning import apply_tuned, load_tuned

TINY = {
    "data.name": "digits",
    "model.backbone": "mlp",
    "model.embedding_dim": 8,
    "train.epochs": 1,
    "train.iterations_per_epoch": 3,
    "train.threads": 1,
    "eval.plots": False,
    "eval.every": 0,
    "sampler.classes_per_batch": 6,
    "sampler.examples_per_class": 8,
    "eval.neighbours": 16,
    "eval.knn_k": 8,
}
LOSSES = ("magnet", "softmax")


class TinyTuned(Experiment):
    name = "tiny-tuned-test"
    description = "two losses on digits, each tuned by a 2-trial search"

    def specs(self, quick):
        return [
            RunSpec(
                f"digits-{loss}-s{seed}",
                {**TINY, "loss.name": loss, "train.seed": seed},
                {"dataset": "digits", "loss": loss, "seed": seed},
            )
            for loss in LOSSES
            for seed in (0, 1)
        ]

    def tuning(self, quick):
        return [
            RunSpec(
                f"digits-{loss}",
                {**TINY, "loss.name": loss, "data.val_fraction": 0.2},
                {"dataset": "digits", "loss": loss},
            )
            for loss in LOSSES
        ]

    def tuning_trials(self, quick):
        return 2

    def analyse(self, out_dir, runs):
        results = {
            "tables": [
                {
                    "title": "tiny",
                    "rows": [
                        {"run": name, "knc_error": o.summary["knc_error"]}
                        for name, o in runs.items()
                    ],
                }
            ]
        }
        save_results(out_dir, results)
        return results


if TinyTuned.name not in EXPERIMENTS:
    EXPERIMENTS.register(TinyTuned.name)(TinyTuned)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    out = tmp_path_factory.mktemp("tuned")
    return out, run_experiment(TinyTuned.name, out, progress=False)


@pytest.mark.slow
def test_each_group_trains_with_the_best_trial_of_its_own_search(tuned):
    out, results = tuned
    entries = load_tuned(out)
    assert set(entries) == {"digits-magnet", "digits-softmax"} and results["tuned"] == entries
    for loss in LOSSES:
        entry = entries[f"digits-{loss}"]
        assert entry["group"] == {"dataset": "digits", "loss": loss} and entry["trials"] == 2
        history = (
            (
                out
                / "tuning"
                / f"digits-{loss}"
                / f"trial_{entry['best_trial']:03d}"
                / "metrics.jsonl"
            )
            .read_text()
            .splitlines()
        )
        metric = "knc_error" if loss == "magnet" else "knn_error"
        assert json.loads(history[-1])["tuner"] == {"metric": metric, "error": entry["val_error"]}
        assert (out / "tuning" / f"digits-{loss}" / "study.db").is_file()
        assert set(entry["params"]) >= {"train.lr", "train.lr_decay"}
        assert ("loss.scale" in entry["params"]) == (loss == "magnet")
        for seed in (0, 1):
            config = json.loads((out / f"digits-{loss}-s{seed}" / "config.json").read_text())
            assert config["train"]["lr"] == entry["params"]["train.lr"]
            assert config["train"]["seed"] == seed and config["data"]["val_fraction"] == 0.0
    # the scored trials keep their numbers, not their checkpoints or shared warm starts
    assert not list((out / "tuning").rglob("checkpoint.pt"))
    assert not (out / "tuning" / "warm_starts").exists()
    assert "## Tuned configurations" in (out / "report.md").read_text()


@pytest.mark.slow
def test_a_rerun_skips_finished_trials_and_runs(tuned):
    out, _ = tuned
    before = load_tuned(out)
    messages = []
    run_experiment(TinyTuned.name, out, progress=False, log=messages.append)
    assert sum("2 trial(s) finished before; nothing to train" in m for m in messages) == 2
    assert sum("already finished; skipped" in m for m in messages) == 4
    assert load_tuned(out) == before  # the searches' times are those that ran them


@pytest.mark.slow
def test_tuning_one_dataset_keeps_the_groups_tuned_before(tuned, tmp_path):
    out, _ = tuned
    earlier = {
        "cifar10-magnet": {
            "group": {"dataset": "cifar10", "loss": "magnet"},
            "params": {"train.lr": 0.003},
        }
    }
    (tmp_path / "tuned.json").write_text(json.dumps(earlier))
    run_experiment(TinyTuned.name, tmp_path, progress=False, tuned_from=None)
    assert set(load_tuned(tmp_path)) == {"cifar10-magnet", "digits-magnet", "digits-softmax"}
    assert load_tuned(tmp_path)["cifar10-magnet"] == earlier["cifar10-magnet"]


@pytest.mark.slow
def test_another_folder_reuses_the_tuning_without_searching(tuned, tmp_path):
    out, _ = tuned
    reused = run_experiment(TinyTuned.name, tmp_path / "reuse", tuned_from=out, progress=False)
    assert not (tmp_path / "reuse" / "tuning").exists()
    assert reused["tuned"] == load_tuned(out)
    assert Path(reused["tuned_from"]).resolve() == out.resolve()  # relative: results travel
    with pytest.raises(ValueError, match="holds no tuned.json"):
        run_experiment(
            TinyTuned.name, tmp_path / "other", tuned_from=tmp_path / "none", progress=False
        )


def test_runs_without_a_tuned_group_and_broken_files_are_named(tmp_path):
    spec = RunSpec("a", {}, {"dataset": "digits", "loss": "triplet"})
    tuned = {
        "digits-magnet": {
            "group": {"dataset": "digits", "loss": "magnet"},
            "params": {"train.lr": 0.01},
        }
    }
    with pytest.raises(
        ValueError,
        match=r"no tuned configuration for run 'a' .*the tuning has: "
        r'\{"dataset": "digits", "loss": "magnet"\}',
    ):
        apply_tuned([spec], tuned)
    kept = apply_tuned(
        [RunSpec("b", {"train.lr": 0.1, "train.seed": 3}, {"dataset": "digits", "loss": "magnet"})],
        tuned,
    )
    assert kept[0].overrides == {"train.lr": 0.01, "train.seed": 3}
    (tmp_path / "tuned.json").write_text("{broken")
    with pytest.raises(ValueError, match="is not valid JSON"):
        load_tuned(tmp_path)
    (tmp_path / "tuned.json").write_text('{"x": {"params": {}}}')
    with pytest.raises(ValueError, match="is not a tuned.json"):
        load_tuned(tmp_path)


def test_the_datasets_option_keeps_only_those_runs(tmp_path, capsys):
    assert (
        main(["experiment", TinyTuned.name, "--out", str(tmp_path / "x"), "--datasets", "cifar10"])
        == 2
    )
    assert (
        "select no run of experiment 'tiny-tuned-test'; its datasets: digits"
        in capsys.readouterr().err
    )


def test_classification_tuned_trains_real_passes_until_the_validation_error_stops():
    experiment = TunedClassification()
    specs, tuning = experiment.specs(False), experiment.tuning(False)
    assert len(specs) == len(BUDGET) * 3 * 3 and len(tuning) == len(BUDGET) * 3
    for spec in [*specs, *tuning]:
        o = spec.overrides
        assert o["train.iterations_per_epoch"] == 0 and o["eval.every"] == 0
        assert (o["train.epochs"], o["train.patience"]) == BUDGET[spec.group["dataset"]]
        assert o["train.warm_start_lr"] == 0.05 and o["train.warm_start_epochs"] == 1
        assert o["data.val_fraction"] == 0.1  # trials and runs: the benchmark's seen split
    for spec in tuning:
        assert "seed" not in spec.group
    # every run has exactly one search for its dataset and loss
    for spec in specs:
        assert (
            len(apply_tuned([spec], {t.name: {"group": t.group, "params": {}} for t in tuning}))
            == 1
        )


def test_a_tuning_by_the_old_random_search_is_kept(tmp_path):
    """Published experiments were tuned by the random search Optuna replaced: a rerun keeps
    their tuned.json entries (and so their numbers) instead of refusing or retuning."""
    tuned = {
        f"digits-{loss}": {
            "group": {"dataset": "digits", "loss": loss},
            "params": {"train.lr": 0.02},
            "metric": "knn_error",
        }
        for loss in LOSSES
    }
    (tmp_path / "tuned.json").write_text(json.dumps(tuned))
    for name in tuned:
        (tmp_path / "tuning" / name).mkdir(parents=True)
        (tmp_path / "tuning" / name / "search.json").write_text('{"metric": "knn_error"}')
    messages = []
    results = run_experiment(TinyTuned.name, tmp_path, progress=False, log=messages.append)
    assert sum("kept the random search's tuning" in m for m in messages) == 2
    assert results["tuned"] == tuned and not list(tmp_path.rglob("study.db"))
    config = json.loads((tmp_path / "digits-magnet-s0" / "config.json").read_text())
    assert config["train"]["lr"] == 0.02


def test_a_stale_tuned_entry_of_another_plan_is_not_applied(tmp_path):
    """An entry of tuned.json that no search of this invocation wrote (e.g. of an older plan
    whose runs had other names) must not leak its values into runs whose labels it matches."""
    tuned = {
        f"digits-{loss}": {
            "group": {"dataset": "digits", "loss": loss},
            "params": {"train.lr": 0.02},
            "metric": "knn_error",
        }
        for loss in LOSSES
    }
    stale = {"group": {"dataset": "digits"}, "params": {"train.lr_decay": 0.5}}
    (tmp_path / "tuned.json").write_text(json.dumps({"old-digits": stale, **tuned}))
    for name in tuned:
        (tmp_path / "tuning" / name).mkdir(parents=True)
        (tmp_path / "tuning" / name / "search.json").write_text('{"metric": "knn_error"}')
    results = run_experiment(TinyTuned.name, tmp_path, progress=False)
    assert results["tuned"] == tuned
    config = json.loads((tmp_path / "digits-softmax-s1" / "config.json").read_text())
    assert config["train"]["lr"] == 0.02 and config["train"]["lr_decay"] != 0.5
