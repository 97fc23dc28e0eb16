"""Random search: the space (ranges, scales, constraints, errors) and a tiny digits search."""

import csv
import json
import math

import numpy as np
import pytest

from magnetdml.cli import main
from magnetdml.experiments.search import random_search
from magnetdml.experiments.search_space import DEFAULT_SPACE, SearchSpace
from magnetdml.training import Config, apply_overrides, load_config_file
from magnetdml.training.runs import evaluate_run

TINY = {"train.epochs": 1, "train.iterations_per_epoch": 3, "train.threads": 1,
        "data.val_fraction": 0.2, "eval.every": 0, "eval.plots": False,
        "eval.neighbours": 16, "eval.knn_k": 8, "model.embedding_dim": 16}


def draws(space, n=400, num_classes=None, seed=0):
    rng = np.random.default_rng(seed)
    return [space.sample(rng, num_classes) for _ in range(n)]


def test_magnet_samples_stay_in_their_ranges_and_the_batch_bound():
    samples = draws(SearchSpace("magnet"), num_classes=10)
    assert set(samples[0]) == {"train.lr", "train.lr_decay", "loss.alpha", "loss.scale",
                               "index.clusters_per_class", "sampler.clusters_per_batch",
                               "sampler.examples_per_cluster"}
    for name in ("lr", "lr_decay", "alpha", "scale", "clusters_per_class",
                 "clusters_per_batch", "examples_per_cluster"):
        p = DEFAULT_SPACE[name]
        values = np.array([s[p.field] for s in samples])
        assert values.min() >= p.low and values.max() <= p.high, name
        if p.integer:
            assert all(isinstance(s[p.field], int) for s in samples)
            assert values.min() == p.low and values.max() == p.high, name   # ends reachable
    for s in samples:
        m, d = s["sampler.clusters_per_batch"], s["sampler.examples_per_cluster"]
        assert m * d <= 48
        assert m - 1 <= s["index.clusters_per_class"] * 9   # enough impostor clusters


def test_log_uniform_puts_half_the_draws_below_the_geometric_mean():
    lrs = np.array([s["train.lr"] for s in draws(SearchSpace("magnet"), n=2000)])
    below = np.mean(lrs < math.sqrt(1e-4 * 1e-1))
    assert 0.45 < below < 0.55
    # P(lr < midpoint) = log(500) / log(1000) = 0.90 (a linear draw would give 0.5)
    assert np.mean(lrs < (1e-4 + 1e-1) / 2) == pytest.approx(math.log(500) / math.log(1000),
                                                             abs=0.03)


def test_each_loss_searches_its_own_parameters():
    assert set(SearchSpace("triplet").params) == {"lr", "lr_decay", "margin",
                                                  "impostor_fraction"}
    assert set(SearchSpace("softmax").params) == {"lr", "lr_decay"}
    assert set(SearchSpace("cluster_nca").params) == {"lr", "lr_decay", "scale",
                                                      "clusters_per_batch",
                                                      "examples_per_cluster",
                                                      "clusters_per_class"}
    # the paper's "global scaling" optima (2.33-14.2) lie inside the temperature's range
    scale = DEFAULT_SPACE["scale"]
    assert scale.field == "loss.scale" and scale.low < 2.33 and 14.2 < scale.high


def test_weight_decay_is_searched_only_when_given_a_range():
    assert "weight_decay" not in SearchSpace("magnet").params
    space = SearchSpace("softmax", {"weight_decay": "1e-5:1e-3"})
    values = [s["train.weight_decay"] for s in draws(space, n=200)]
    assert 1e-5 <= min(values) and max(values) <= 1e-3


def test_overrides_narrow_or_fix_a_range_and_draws_are_seeded():
    space = SearchSpace("magnet", {"lr": "0.01", "alpha": "2:3", "clusters_per_class": "4:4"})
    samples = draws(space)
    assert {s["train.lr"] for s in samples} == {0.01}
    assert all(2 <= s["loss.alpha"] <= 3 for s in samples)
    assert {s["index.clusters_per_class"] for s in samples} == {4}
    assert draws(space, n=5, seed=3) == draws(space, n=5, seed=3)
    assert draws(space, n=5, seed=3) != draws(space, n=5, seed=4)


@pytest.mark.parametrize("overrides, match", [
    ({"lr": "1e-1:1e-4"}, r"space\.lr must be LOW:HIGH .* got 0\.1:0\.0001; swap"),
    ({"lr": "0:1e-2"}, r"space\.lr must be LOW:HIGH with 0 < LOW"),
    ({"lr": "fast"}, r"space\.lr must be LOW:HIGH or one VALUE .* 'fast'"),
    ({"lr_decay": "0.9:1.2"}, r"space\.lr_decay .* 0 < LOW <= HIGH <= 1; got 0\.9:1\.2"),
    ({"clusters_per_class": "1.5:4"}, r"\(integers\); got 1\.5:4"),
    ({"clusters_per_batch": "1:4"}, r"space\.clusters_per_batch .* 2 <= LOW"),
    ({"margin": "0.1:0.5"}, r"space\.margin does not apply to loss 'magnet'"),
    ({"gap": "1:2"}, r"unknown search parameter space\.gap; valid: lr, lr_decay"),
    ({"clusters_per_batch": "20:24", "examples_per_cluster": "3:8"},
     r"no \(M, D\) .* M \* D <= max_batch = 48"),
])
def test_bad_ranges_are_refused_with_the_rule_and_the_value(overrides, match):
    with pytest.raises(ValueError, match=match):
        SearchSpace("magnet", overrides)


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    out = tmp_path_factory.mktemp("search")
    base = apply_overrides(Config(), TINY)
    return base, out, random_search(base, out, trials=3, seed=1, log=lambda _: None)


def test_search_writes_the_trials_table_and_the_best_config(search):
    base, out, result = search
    with open(out / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["trial"]) for r in rows] == [0, 1, 2]
    assert {"train.lr", "loss.alpha", "val_knc_error", "val_knn_error", "train_seconds",
            "seconds"} <= set(rows[0])
    ok = [r for r in rows if r["status"] == "ok"]
    errors = [float(r["val_knc_error"]) for r in ok]
    assert all(0 <= e <= 1 for e in errors)
    assert result.best["trial"] == int(ok[int(np.argmin(errors))]["trial"])
    loaded = load_config_file(out / "best_config.yaml").validate()
    assert loaded == result.best_config
    assert loaded.train.lr == result.best["train.lr"]
    assert loaded.data.val_fraction == base.data.val_fraction and loaded.out is None


def test_trial_params_are_the_seeded_draws(search):
    base, out, result = search
    space = SearchSpace("magnet")
    for row in result.trials:
        expected = space.sample(np.random.default_rng([1, row["trial"]]), 10)
        assert {k: row[k] for k in expected} == expected
        saved = json.loads((out / f"trial_{row['trial']:03d}" / "config.json").read_text())
        assert saved["train"]["lr"] == expected["train.lr"]


def test_search_resumes_skipping_finished_trials_and_extends(search):
    base, out, _ = search
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("trial_*/metrics.json")}
    messages = []
    result = random_search(base, out, trials=4, seed=1, log=messages.append)
    assert messages[:3] == [f"trial {i}: finished before, skipped" for i in range(3)]
    assert len(result.trials) == 4 and (out / "trial_003" / "val_metrics.json").exists()
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps      # not retrained
    with pytest.raises(ValueError, match="holds a search with other settings"):
        random_search(base, out, trials=4, seed=2)


def test_trials_in_worker_processes_are_the_same_runs(search, tmp_path):
    base, out, result = search
    parallel = random_search(base, tmp_path / "parallel", trials=3, seed=1, jobs=2,
                             log=lambda _: None)
    drop = ("seconds", "train_seconds")
    assert [{k: v for k, v in row.items() if k not in drop} for row in parallel.trials] == \
        [{k: v for k, v in row.items() if k not in drop} for row in result.trials[:3]]
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        random_search(base, tmp_path / "none", trials=1, jobs=0)


def test_evaluate_run_on_test_matches_the_trainers_summary(search):
    _, out, _ = search
    summary = json.loads((out / "trial_000" / "metrics.json").read_text())
    def errors(**options):
        return evaluate_run(out / "trial_000", split="test", metrics=["knc_error", "knn_error"],
                            write=False, **options)["test"]

    assert errors() == {"knc_error": summary["knc_error"], "knn_error": summary["knn_error"]}
    assert errors(test_time_augment=0) == errors()        # 0: the config's (none)
    averaged = errors(test_time_augment=2)
    assert averaged != errors()                            # other embeddings
    with pytest.raises(ValueError, match=r"test_time_augment must be >= 0 .*; got -1"):
        errors(test_time_augment=-1)
    with pytest.raises(ValueError, match="split 'unseen' is empty for this run"):
        evaluate_run(out / "trial_000", split="unseen", write=False)


def test_search_refuses_a_config_without_a_validation_split(tmp_path):
    base = apply_overrides(Config(), {**TINY, "data.val_fraction": 0.0})
    with pytest.raises(ValueError, match=r"data\.val_fraction must be > 0 .* got 0\.0"):
        random_search(base, tmp_path, trials=1)
    with pytest.raises(ValueError, match="metric must be one of"):
        random_search(apply_overrides(Config(), TINY), tmp_path, trials=1, metric="acc")


def test_cli_search_runs_and_reports_bad_ranges(tmp_path, capsys):
    flags = [f"--{k}={v}" for k, v in TINY.items() if k != "data.val_fraction"]
    assert main(["search", "--trials", "1", "--out", str(tmp_path / "s"), "--quiet",
                 "--space.lr", "1e-3:1e-2", *flags]) == 0
    assert "best of 1 trial(s)" in capsys.readouterr().out
    saved = json.loads((tmp_path / "s" / "trial_000" / "config.json").read_text())
    assert saved["data"]["val_fraction"] == 0.1 and 1e-3 <= saved["train"]["lr"] <= 1e-2
    assert main(["search", "--trials", "1", "--out", str(tmp_path / "t"),
                 "--space.lr", "1e-2:1e-3"]) == 2
    assert "space.lr must be LOW:HIGH" in capsys.readouterr().err


def test_a_broken_base_config_stops_after_the_first_failed_trials(tmp_path):
    base = apply_overrides(Config(), {**TINY, "loss.name": "triplet",
                                      "sampler.classes_per_batch": 12})   # P = 12 > 10 classes
    messages = []
    with pytest.raises(ValueError, match=r"first 3 trial\(s\) all failed; the first: failed: "
                                         r"classes_per_batch must be <= the 10 classes"):
        random_search(base, tmp_path, trials=5, log=messages.append)
    assert len(messages) == 3 and not list(tmp_path.glob("trial_*/val_metrics.json"))


def test_a_search_written_before_a_config_field_existed_resumes(search, tmp_path):
    """A newer magnetdml resumes an older search: the saved base lacks the new fields."""
    import shutil
    base, out, first = search
    old = tmp_path / "old"
    shutil.copytree(out, old)
    saved = json.loads((old / "search.json").read_text())
    del saved["base"]["train"]["patience"], saved["base"]["model"]["init_from"]
    saved["base"]["data"]["data_dir"] = "/somewhere/else"          # a machine field
    (old / "search.json").write_text(json.dumps(saved))
    messages = []
    again = random_search(base, old, trials=len(first.trials), seed=1, log=messages.append)
    assert all("finished before, skipped" in m for m in messages)
    assert again.best == first.best
    saved["base"]["train"]["lr_decay"] = 0.5                     # a real difference
    (old / "search.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="holds a search with other settings"):
        random_search(base, old, trials=1, seed=1)
