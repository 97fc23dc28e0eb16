"""Optuna search: the space table (ranges, sources, constraints, errors), a tiny digits search,
its study in SQLite (resumed, extended, shared by processes, retried after a kill)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from magnetdml.cli import main
from magnetdml.experiments.search import apply_params, search
from magnetdml.experiments.search_space import COMMON, SPACES, space_for
from magnetdml.experiments.trial import config_fields
from magnetdml.experiments.trial_space import SearchSpace
from magnetdml.training import Config, apply_overrides, load_config_file

TINY = {
    "train.epochs": 2,
    "train.iterations_per_epoch": 3,
    "train.threads": 1,
    "data.val_fraction": 0.2,
    "eval.every": 0,
    "eval.plots": False,
    "eval.neighbours": 16,
    "eval.knn_k": 8,
    "model.embedding_dim": 16,
}
QUIET = {"log": lambda _: None}


def draws(space, n=300, num_classes=10, smallest=100, seed=0):
    """``n`` draws of ``space`` by Optuna's random sampler (the TPE's startup trials)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(space.suggest(trial, num_classes, smallest))
        study.tell(trial, 0.0)
    return out


def test_magnet_draws_stay_in_app_b_ranges_and_the_batch_bound():
    samples = draws(SearchSpace("magnet"))
    assert set(samples[0]) == {
        "train.lr",
        "train.lr_decay",
        "loss.alpha",
        "loss.scale",
        "index.clusters_per_class",
        "sampler.clusters_per_batch",
        "sampler.examples_per_cluster",
    }
    space = space_for("magnet")
    for name, p in space.items():
        values = np.array([s[p.field] for s in samples])
        assert values.min() >= p.low and values.max() <= p.high, name
        assert "App. B" in p.source, name  # every range says where it is from
    for s in samples:
        m, d = s["sampler.clusters_per_batch"], s["sampler.examples_per_cluster"]
        assert m * d <= 48 and m - 1 <= s["index.clusters_per_class"] * 9
    # the paper's "global scaling" optima (2.33-14.2) lie inside the temperature's range
    assert space["scale"].low < 2.33 and 14.2 < space["scale"].high


def test_small_classes_cap_k_so_clusters_keep_two_members():
    ks = {s["index.clusters_per_class"] for s in draws(SearchSpace("magnet"), smallest=6)}
    assert max(ks) <= 3


def test_each_loss_searches_its_own_parameters_and_pml_losses_the_common_ones():
    assert set(SearchSpace("triplet").params) == {"lr", "lr_decay", "margin", "impostor_fraction"}
    assert set(SearchSpace("softmax").params) == set(COMMON)
    assert set(space_for("pml:ProxyAnchorLoss")) >= set(COMMON)
    assert all(p.source for space in SPACES.values() for p in space.values())
    with pytest.raises(ValueError, match=r"unknown loss 'magnett'; did you mean 'magnet'\?"):
        space_for("magnett")


def test_pml_losses_search_their_keywords_through_loss_options():
    space = SearchSpace("pml:ProxyAnchorLoss")
    assert set(space.params) == {"lr", "lr_decay", "margin", "alpha"}
    values = draws(space, n=1)[0]
    config = apply_params(
        apply_overrides(Config(), {"loss.name": "pml:ProxyAnchorLoss"}), values
    ).validate()
    assert yaml.safe_load(config.loss.options) == {
        "margin": values["loss.options.margin"],
        "alpha": values["loss.options.alpha"],
    }
    # what a tuning stage records: one loss.options field, which a run's overrides can take
    base = apply_overrides(
        Config(), {"loss.name": "pml:ProxyAnchorLoss", "loss.options": "{alpha: 16}"}
    )
    fields = config_fields(base, {"train.lr": 0.01, "loss.options.margin": 0.2})
    assert fields["train.lr"] == 0.01 and set(fields) == {"train.lr", "loss.options"}
    assert yaml.safe_load(apply_overrides(base, fields).validate().loss.options) == {
        "alpha": 16,
        "margin": 0.2,
    }
    for name in (
        "pml:MultiSimilarityLoss",
        "pml:SoftTripleLoss",
        "pml:SupConLoss",
        "pml:NormalizedSoftmaxLoss",
        "pml:ArcFaceLoss",
        "pml:ProxyNCALoss",
    ):
        values = draws(SearchSpace(name), n=1)[0]
        apply_params(apply_overrides(Config(), {"loss.name": name}), values).validate()


def test_overrides_narrow_or_fix_a_range():
    space = SearchSpace("magnet", {"lr": "0.01", "alpha": "2:3", "clusters_per_class": "4:4"})
    samples = draws(space, n=50)
    assert {s["train.lr"] for s in samples} == {0.01}
    assert all(2 <= s["loss.alpha"] <= 3 for s in samples)
    assert {s["index.clusters_per_class"] for s in samples} == {4}
    wd = draws(SearchSpace("softmax", {"weight_decay": "1e-5:1e-3"}), n=30)
    assert all(1e-5 <= s["train.weight_decay"] <= 1e-3 for s in wd)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"lr": "1e-1:1e-4"}, r"space\.lr must be LOW:HIGH .* got 0\.1:0\.0001; swap"),
        ({"lr": "0:1e-2"}, r"space\.lr must be LOW:HIGH with 0 < LOW"),
        ({"lr": "fast"}, r"space\.lr must be LOW:HIGH or one VALUE .* 'fast'"),
        ({"lr_decay": "0.9:1.2"}, r"space\.lr_decay .* 0 < LOW <= HIGH <= 1; got 0\.9:1\.2"),
        ({"clusters_per_class": "1.5:4"}, r"\(integers\); got 1\.5:4"),
        ({"clusters_per_batch": "1:4"}, r"space\.clusters_per_batch .* 2 <= LOW"),
        ({"margin": "0.1:0.5"}, r"space\.margin does not apply to loss 'magnet'"),
        ({"gap": "1:2"}, r"unknown search parameter space\.gap; valid: lr, lr_decay"),
        (
            {"clusters_per_batch": "20:24", "examples_per_cluster": "3:8"},
            r"no \(M, D\) .* M \* D <= max_batch = 48",
        ),
    ],
)
def test_bad_ranges_are_refused_with_the_rule_and_the_value(overrides, match):
    with pytest.raises(ValueError, match=match):
        SearchSpace("magnet", overrides)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "s"
    base = apply_overrides(Config(), TINY)
    return base, out, search(base, out, trials=3, seed=1, **QUIET)


@pytest.mark.slow
def test_search_writes_its_study_trials_table_and_best_config(searched):
    base, out, result = searched
    assert (out / "study.db").is_file()
    with open(out / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["trial"]) for r in rows] == [0, 1, 2]
    assert {"train.lr", "loss.alpha", "val_error", "train_seconds", "seconds"} <= set(rows[0])
    done = [r for r in rows if r["state"] == "complete"]
    assert result.best["trial"] == int(min(done, key=lambda r: float(r["val_error"]))["trial"])
    # the trial's value is its last pass's validation kNC error (a cluster loss; no patience)
    history = (out / result.best["run_dir"] / "metrics.jsonl").read_text().splitlines()
    assert json.loads(history[-1])["tuner"] == {
        "metric": "knc_error",
        "error": result.best["val_error"],
    }
    loaded = load_config_file(out / "best_config.yaml").validate()
    assert loaded == result.best_config and loaded.train.lr == result.best["train.lr"]
    assert loaded.out is None and loaded.data.val_fraction == base.data.val_fraction
    # trials draw nothing, keep no model and score no test split: only the tuner's score
    assert not list(out.rglob("*.png")) and not list(out.rglob("checkpoint.pt"))
    summary = json.loads((out / result.best["run_dir"] / "metrics.json").read_text())
    assert "knn_error" not in summary and "knc_error" not in summary
    with pytest.raises(ValueError, match="eval.plots draws the final test embeddings"):
        apply_overrides(Config(), {"eval.final": False}).validate()


@pytest.mark.slow
def test_a_rerun_resumes_the_study_and_more_trials_extend_it(searched):
    base, out, first = searched
    messages = []
    again = search(base, out, trials=3, seed=1, log=messages.append)
    assert messages == ["3 trial(s) finished before; nothing to train"]
    assert again.best == first.best
    longer = search(base, out, trials=4, seed=1, **QUIET)
    assert len(longer.trials) == 4 and longer.trials[:3] == first.trials
    with pytest.raises(ValueError, match="holds a search with other settings"):
        search(base, out, trials=4, seed=2)


def _cli(*args):
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parents[2] / "src"),
        "OMP_NUM_THREADS": "1",
    }
    flags = [f"--{k}={v}" for k, v in TINY.items() if k != "data.val_fraction"]
    return subprocess.Popen(
        [sys.executable, "-m", "magnetdml", "search", "--quiet", *flags, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.slow
def test_two_processes_share_one_sqlite_study(tmp_path):
    """Two processes (as on two machines, each with its own folder) fill one study."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    procs = [
        _cli("--trials", "4", "--storage", url, "--out", str(tmp_path / side / "s"))
        for side in ("a", "b")
    ]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stdout.read().decode()
    names = optuna.get_all_study_names(url)
    assert len(names) == 1 and names[0].startswith("s-")  # one study, named alike
    study = optuna.load_study(study_name=names[0], storage=url)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert 4 <= len(finished) <= 5  # both stop once 4 have finished or are running
    folders = {t.user_attrs["run_dir"] for t in finished}
    assert len(folders) == len(finished)
    assert not (tmp_path / "a" / "s" / "study.db").exists()


@pytest.mark.slow
def test_a_killed_search_resumes_its_unfinished_trial_from_its_checkpoint(tmp_path):
    out = tmp_path / "s"
    slow = ["--train.epochs=12", "--train.iterations_per_epoch=40", "--pruner=none"]
    proc = _cli("--trials", "2", "--out", str(out), *slow)
    url = f"sqlite:///{out / 'study.db'}"
    deadline = time.time() + 240
    while time.time() < deadline:  # kill once trial 0 has a checkpoint of a pass
        if (out / "trial_000" / "checkpoint.pt").is_file():
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    name = optuna.get_all_study_names(url)[0]
    killed = optuna.load_study(study_name=name, storage=url).trials[0]
    assert killed.state == optuna.trial.TrialState.RUNNING
    history = (out / "trial_000" / "metrics.jsonl").read_text().splitlines()
    rerun = _cli("--trials", "2", "--out", str(out), *slow)
    assert rerun.wait(timeout=300) == 0, rerun.stdout.read().decode()
    trials = optuna.load_study(study_name=name, storage=url).trials
    assert trials[0].state == optuna.trial.TrialState.FAIL
    retry = next(t for t in trials[1:] if t.user_attrs.get("run_dir") == "trial_000")
    assert retry.state == optuna.trial.TrialState.COMPLETE and retry.params == killed.params
    resumed = (out / "trial_000" / "metrics.jsonl").read_text().splitlines()
    assert resumed[: len(history)] == history and len(resumed) == 12  # went on, not over
    with open(out / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and {r["state"] for r in rows} == {"complete"}


def test_cli_search_reports_bad_ranges_and_bad_pruners(tmp_path, capsys):
    assert (
        main(["search", "--trials", "1", "--out", str(tmp_path / "t"), "--space.lr", "1e-2:1e-3"])
        == 2
    )
    assert "space.lr must be LOW:HIGH" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["search", "--trials", "1", "--out", str(tmp_path / "t"), "--pruner", "x"])


@pytest.mark.slow
def test_cli_search_leaves_its_study_in_its_folder(tmp_path, capsys):
    flags = [f"--{k}={v}" for k, v in TINY.items() if k != "data.val_fraction"]
    assert (
        main(
            [
                "search",
                "--trials",
                "1",
                "--out",
                str(tmp_path / "s"),
                "--quiet",
                "--space.lr",
                "1e-3:1e-2",
                *flags,
            ]
        )
        == 0
    )
    assert "best of 1 finished trial(s)" in capsys.readouterr().out
    assert (tmp_path / "s" / "study.db").is_file()
    saved = json.loads((tmp_path / "s" / "trial_000" / "config.json").read_text())
    assert saved["data"]["val_fraction"] == 0.1 and 1e-3 <= saved["train"]["lr"] <= 1e-2


def test_search_refuses_a_config_without_a_validation_split(tmp_path):
    base = apply_overrides(Config(), {**TINY, "data.val_fraction": 0.0})
    with pytest.raises(ValueError, match=r"data\.val_fraction .* must be > 0 .* got 0\.0"):
        search(base, tmp_path, trials=1)
    with pytest.raises(ValueError, match="pruner must be one of"):
        search(apply_overrides(Config(), TINY), tmp_path, trials=1, pruner="mean")


@pytest.mark.slow
def test_a_broken_base_config_stops_the_search_with_its_error(tmp_path):
    base = apply_overrides(
        Config(), {**TINY, "loss.name": "triplet", "sampler.classes_per_batch": 12}
    )  # P = 12 > 10 classes
    with pytest.raises(ValueError, match=r"classes_per_batch must be <= the 10 classes"):
        search(base, tmp_path, trials=5, **QUIET)


@pytest.mark.slow
def test_jobs_workers_fill_one_study_without_overshooting(tmp_path):
    base = apply_overrides(Config(), TINY)
    result = search(base, tmp_path / "s", trials=3, jobs=2, **QUIET)
    assert len(result.trials) == 3  # the lock keeps the count exact
    assert len({r["run_dir"] for r in result.trials}) == 3
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        search(base, tmp_path / "t", trials=1, jobs=0)


def test_a_trial_with_patience_stops_when_its_tuner_error_stalls_and_keeps_the_best(tmp_path):
    # lr ~ 0: the validation error cannot move, so e* = 1 and the trial ends after pass 1 + P
    base = apply_overrides(
        Config(), {**TINY, "train.epochs": 6, "train.patience": 2, "loss.name": "softmax"}
    )
    space = SearchSpace("softmax", {"lr": "1e-12", "lr_decay": "0.9"})
    result = search(base, tmp_path / "s", trials=1, space=space, seed=0, **QUIET)
    run_dir = tmp_path / "s" / result.best["run_dir"]
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2, 3]
    errors = [r["tuner"]["error"] for r in history]
    assert result.best["val_error"] == min(errors)
    # without patience the same trial trains every pass and ends with the last one
    base = apply_overrides(base, {"train.patience": 0})
    result = search(base, tmp_path / "n", trials=1, space=space, seed=0, **QUIET)
    history = (tmp_path / "n" / result.best["run_dir"] / "metrics.jsonl").read_text()
    assert len(history.splitlines()) == 6


@pytest.mark.parametrize("loss", ["softmax", "magnet"])
def test_the_tuner_scores_a_pass_as_the_final_runs_early_stopping_does(tmp_path, loss):
    # the same config and seed as a trial and as a run with patience: the trial's per-pass
    # tuner error is the run's validation error of its own protocol (kNN against the training
    # embeddings, or kNC), so the search ranks trials by what the final runs stop on
    from magnetdml.training import train

    fields = {**TINY, "train.epochs": 3, "train.patience": 3, "loss.name": loss}
    base = apply_overrides(Config(), fields)
    space = SearchSpace(loss, {"lr": "0.01", "lr_decay": "0.9"})
    if loss == "magnet":
        space = SearchSpace(
            loss,
            {
                "lr": "0.01",
                "lr_decay": "0.9",
                "alpha": "1",
                "scale": "1",
                "clusters_per_class": "2",
                "clusters_per_batch": "4",
                "examples_per_cluster": "4",
            },
        )
    result = search(base, tmp_path / "s", trials=1, space=space, seed=0, **QUIET)
    trial = tmp_path / "s" / result.best["run_dir"]
    lines = (trial / "metrics.jsonl").read_text().splitlines()
    tuner = [json.loads(line)["tuner"] for line in lines]
    values = result.best_config
    train(
        apply_overrides(values, {"out": str(tmp_path / "run"), "eval.final": True}),
        progress=False,
    )
    history = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    own = "val_knc_error" if loss == "magnet" else "val_knn_error"
    expected = [json.loads(line)[own] for line in history]
    assert [t["error"] for t in tuner] == pytest.approx(expected, abs=1e-12)


def test_a_large_training_set_scores_knn_trials_against_a_seeded_sample(monkeypatch, tmp_path):
    from magnetdml.experiments import trial
    from magnetdml.training.setup import load_splits

    monkeypatch.setattr(trial, "TUNER_REFERENCES", 200)  # digits' training set is larger
    base = apply_overrides(Config(), {**TINY, "loss.name": "softmax", "eval.knn_k": 64})
    space = SearchSpace("softmax", {"lr": "0.01", "lr_decay": "0.9"})
    first = search(base, tmp_path / "a", trials=1, space=space, seed=0, **QUIET)
    again = search(base, tmp_path / "b", trials=1, space=space, seed=0, **QUIET)
    history = (tmp_path / "a" / first.best["run_dir"] / "metrics.jsonl").read_text()
    # k' = round(k M / N): the sample's share of the k nearest of all N
    scaled = round(64 * 200 / len(load_splits(base).train))
    assert 1 < scaled < 64
    tuner = json.loads(history.splitlines()[-1])["tuner"]
    assert tuner["metric"] == f"knn_error (200 references, k {scaled})"
    assert first.best["val_error"] == again.best["val_error"]  # the sample is seeded


def test_a_study_made_before_the_scaled_neighbours_keeps_its_own_score(monkeypatch, tmp_path):
    from magnetdml.experiments import study, trial

    monkeypatch.setattr(trial, "TUNER_REFERENCES", 200)
    base = apply_overrides(Config(), {**TINY, "loss.name": "softmax", "eval.knn_k": 64})
    space = SearchSpace("softmax", {"lr": "0.01", "lr_decay": "0.9"})
    with monkeypatch.context() as old:  # a study as made before the rule: no attribute
        old.setattr(study, "TUNER_RULE", "not_the_rule")
        search(base, tmp_path, trials=1, space=space, seed=0, **QUIET)
    extended = search(base, tmp_path, trials=2, space=space, seed=0, **QUIET)
    metrics = [
        json.loads((tmp_path / row["run_dir"] / "metrics.jsonl").read_text().splitlines()[-1])
        for row in extended.trials
    ]
    assert [m["tuner"]["metric"] for m in metrics] == ["knn_error (200 references)"] * 2


def test_pruners_wait_for_the_startup_trials_and_the_warmup_passes(tmp_path):
    from magnetdml.experiments.study import open_study, startup_trials, warmup_passes

    assert warmup_passes({"patience": 6, "epochs": 60}) == 6
    assert warmup_passes({"patience": 0, "epochs": 12}) == 3
    assert warmup_passes({"patience": 0, "epochs": 2}) == 1
    assert startup_trials(8) == 2 and startup_trials(30) == 10
    base = apply_overrides(Config(), {**TINY, "train.epochs": 8, "train.patience": 3})
    from magnetdml.training.config_io import config_to_dict

    task = {"seed": 0, "trials": 9, "pruner": "median", "base": config_to_dict(base)}
    study = open_study(f"sqlite:///{tmp_path / 'study.db'}", "s", task)
    assert study.pruner._n_startup_trials == 3 and study.pruner._n_warmup_steps == 3
    # a real search: no trial is stopped before it has trained its 3 warmup passes (Optuna
    # may prune at the report of pass 3 itself: "disabled until the trial exceeds" step 3)
    result = search(base, tmp_path / "search", trials=6, seed=3, **QUIET)
    pruned = [row for row in result.trials if row["state"] == "pruned"]
    assert all(int(row["epochs"]) >= 3 for row in pruned)


def test_a_study_file_interrupted_while_created_still_resumes(tmp_path, monkeypatch):
    # Optuna creates the study-name table and its unique index in two statements: a search
    # killed between them left a file where each open inserted the study again, and a later
    # open failed with two studies of one name (seen once in CI, on the killed-benchmark test).
    from optuna.storages._rdb import models
    from sqlalchemy.schema import CreateTable

    from magnetdml.experiments import study as study_module
    from magnetdml.training.config_io import config_to_dict

    def interrupted(engine, **_kwargs):
        with engine.begin() as connection:
            connection.execute(CreateTable(models.BaseModel.metadata.tables["studies"]))
        raise KeyboardInterrupt

    monkeypatch.setattr(study_module, "_STORAGES", {})
    task = {"seed": 0, "trials": 2, "pruner": "median", "base": config_to_dict(Config())}
    url = f"sqlite:///{tmp_path / 'study.db'}"
    with monkeypatch.context() as patch:
        patch.setattr(models.BaseModel.metadata, "create_all", interrupted)
        with pytest.raises(KeyboardInterrupt):
            study_module.open_study(url, "s", task)
    assert not (tmp_path / "study.db").exists() and list(tmp_path.iterdir()) == []
    for _ in range(3):  # the search opens its study several times; each finds the one study
        study = study_module.open_study(url, "s", task)
        study_module._STORAGES.clear()
    names = [s.study_name for s in study._storage.get_all_studies()]
    assert names == ["s"]


def test_a_storage_that_cannot_be_opened_is_one_line_naming_it(tmp_path, monkeypatch):
    from magnetdml.experiments import study as study_module
    from magnetdml.training.config_io import config_to_dict

    monkeypatch.setattr(study_module, "_STORAGES", {})
    monkeypatch.setattr(study_module.time, "sleep", lambda _seconds: None)
    task = {"seed": 0, "trials": 1, "pruner": "median", "base": config_to_dict(Config())}
    missing = f"sqlite:///{tmp_path / 'no' / 'study.db'}"
    with pytest.raises(ValueError, match="does not exist; create it first"):
        study_module.open_study(missing, "s", task)
    with pytest.raises(ValueError, match="cannot open the study storage 'nonsense'.*e.g. sqlite"):
        study_module.open_study("nonsense", "s", task)
    assert list(tmp_path.iterdir()) == []


def test_a_sqlite_url_with_options_creates_the_file_its_path_names(tmp_path):
    from magnetdml.experiments.study import create_sqlite_atomically

    create_sqlite_atomically(f"sqlite:///{tmp_path / 'study.db'}?timeout=5", {})
    assert [p.name for p in tmp_path.iterdir()] == ["study.db"]
