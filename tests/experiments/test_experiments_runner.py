"""The experiments runner: real tiny runs (digits, MLP, 1 epoch, 2 losses), skip / resume /
checkpoint deletion, config composition, the report, and the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from magnetdml.experiments import (
    EXPERIMENTS,
    Experiment,
    RunSpec,
    markdown_table,
    mean_std,
    run_experiment,
    runner,
    save_results,
    train_runs,
)
from magnetdml.training import parallel

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
}


class Tiny(Experiment):
    name = "tiny-test"
    description = "two tiny digits runs"

    def specs(self, quick):
        return [
            RunSpec(f"digits-{loss}", {**TINY, "loss.name": loss}, {"loss": loss})
            for loss in ("magnet", "triplet")
        ]

    def analyse(self, out_dir, runs):
        rows = [
            {
                "loss": o.spec.group["loss"],
                "knc_error": o.summary["knc_error"],
                "epochs_logged": len(o.history),
            }
            for o in runs.values()
        ]
        results = {
            "tables": [{"title": "tiny", "rows": rows}],
            "claims": [{"claim": "ran", "holds": True, "detail": "two runs"}],
        }
        save_results(out_dir, results)
        return results


if "tiny-test" not in EXPERIMENTS:
    EXPERIMENTS.register("tiny-test")(Tiny)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp")
    results = run_experiment("tiny-test", out, progress=False)
    return out, results


@pytest.mark.slow
def test_run_experiment_writes_results_report_and_drops_checkpoints(finished):
    out, results = finished
    assert set(results["runs"]) == {"digits-magnet", "digits-triplet"}
    saved = json.loads((out / "results.json").read_text())
    assert saved["experiment"] == "tiny-test" and saved["hardware"]["torch_threads"] == 1
    assert saved["runs_trained"] == 2 and saved["wall_seconds"] > 0
    assert [r["epochs_logged"] for r in saved["tables"][0]["rows"]] == [1, 1]
    report = (out / "report.md").read_text()
    assert "## tiny" in report and "| ran | yes | two runs |" in report
    assert re.search(r"Wall time of the invocation .*: \d+\.\d min, training 2 of the runs", report)
    for name in ("digits-magnet", "digits-triplet"):
        assert (out / name / "metrics.json").is_file()
        assert not (out / name / "checkpoint.pt").exists()
        saved_out = json.loads((out / name / "config.json").read_text())["out"]
        # relative to the working folder: results files hold no absolute path of the machine
        assert not Path(saved_out).is_absolute()
        assert Path(saved_out).resolve() == (out / name).resolve()


def test_runs_differing_only_in_loss_share_a_warm_start_that_goes_when_all_finish(tmp_path):
    run_experiment("tiny-test", tmp_path, progress=False, overrides={"train.warm_start_epochs": 1})
    loaded = {
        name: json.loads((tmp_path / name / "metrics.json").read_text())["warm_start_loaded"]
        for name in ("digits-magnet", "digits-triplet")
    }
    assert loaded == {"digits-magnet": False, "digits-triplet": True}
    assert not (tmp_path / runner.WARM_STARTS).exists()


@pytest.mark.slow
def test_rerun_skips_finished_runs(finished, monkeypatch):
    out, first = finished

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was retrained")

    monkeypatch.setattr(parallel, "train", no_training)
    # other threads: a machine setting, not a different run
    again = run_experiment("tiny-test", out, progress=False, overrides={"train.threads": 2})
    assert again["tables"] == first["tables"]
    assert again["runs_trained"] == 0


@pytest.mark.slow
def test_a_field_added_since_a_run_finished_counts_at_its_default(finished, monkeypatch):
    """A newer magnetdml resumes an older experiment: the saved config lacks the new field."""
    out, first = finished
    for name in ("digits-magnet", "digits-triplet"):
        path = out / name / "config.json"
        saved = json.loads(path.read_text())
        del saved["index"]["refresh_lag"], saved["model"]["options"]
        path.write_text(json.dumps(saved))

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was retrained")

    monkeypatch.setattr(parallel, "train", no_training)
    assert run_experiment("tiny-test", out, progress=False)["tables"] == first["tables"]


@pytest.mark.slow
def test_finished_run_with_other_config_is_refused(finished):
    out, _ = finished
    with pytest.raises(ValueError, match="different config.*overwrite"):
        run_experiment("tiny-test", out, progress=False, overrides={"loss.alpha": 2.0})


def test_unfinished_run_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    spec = RunSpec("run", {**TINY, "loss.name": "magnet", "train.epochs": 2})
    train_runs([spec], tmp_path, progress=False, keep_checkpoints=True)
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    (tmp_path / "run" / "metrics.json").unlink()  # as if killed before the summary
    calls = []
    real = parallel.train

    def spy(config, **kwargs):
        calls.append(config.out)
        return real(config, **kwargs)

    monkeypatch.setattr(parallel, "train", spy)
    outcome = train_runs([spec], tmp_path, progress=False)["run"]
    assert calls == [str(tmp_path / "run")]
    # resumed at epoch 2 of 2: no epoch was trained again, so no history line is repeated
    assert [r["epoch"] for r in outcome.history] == [1, 2]
    assert outcome.summary["iterations"] == 6
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_run_config_layers_spec_user_overrides_and_data_root(tmp_path):
    spec = RunSpec("a", {"data.name": "fashion-mnist", "train.epochs": 5})
    config = runner.run_config(spec, tmp_path, overrides={"train.epochs": 2}, data_root="/data")
    assert config.train.epochs == 2
    assert config.data.data_dir == "/data/fashion-mnist"
    assert config.out == str(tmp_path / "a")
    explicit = runner.run_config(
        RunSpec("b", {"data.name": "mnist", "data.data_dir": "/x"}), tmp_path, data_root="/data"
    )
    assert explicit.data.data_dir == "/x"
    digits = runner.run_config(RunSpec("c", {}), tmp_path, data_root="/data")
    assert digits.data.data_dir is None
    with pytest.raises(ValueError, match="unknown config field 'train.epoch'"):
        runner.run_config(spec, tmp_path, overrides={"train.epoch": 2})


def test_duplicate_run_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unique"):
        train_runs([RunSpec("a", TINY), RunSpec("a", TINY)], tmp_path)


def test_unknown_experiment_lists_valid_names(tmp_path):
    with pytest.raises(ValueError, match="unknown experiment 'nope'; valid names: .*tiny-test"):
        run_experiment("nope", tmp_path)


def test_mean_std_and_tables():
    assert mean_std([0.1, None, 0.3]) == (pytest.approx(0.2), pytest.approx(0.1414213562))
    assert mean_std([0.5]) == (0.5, None) and mean_std([None]) == (None, None)
    table = markdown_table(
        [{"loss": "magnet", "knc_error": 0.1234, "relative_vs_triplet": -0.35, "n": 3, "std": None}]
    )
    assert table.splitlines()[2] == "| magnet | 12.34% | -0.35 | 3 | n/a |"
    spread = markdown_table([{"knc_error": 0.1234, "knc_std": 0.0056, "nmi": 0.5, "nmi_std": 0.01}])
    assert spread.splitlines()[2] == "| 12.34% | 0.56% | 0.5 | 0.01 |"  # only an error's spread
    assert markdown_table([]) == "(no rows)"


def test_command_line_reports_unknown_experiment(capsys):
    from magnetdml import cli

    assert cli.main(["experiment", "nope"]) == 2
    assert re.search(
        r"valid names: .*classification, classification-tuned, clusters, convergence",
        capsys.readouterr().err,
    )


class NeedsModels(Tiny):
    name = "tiny-needs-models"
    keep_checkpoints = True

    def analyse(self, out_dir, runs):
        present = {n: (o.run_dir / "checkpoint.pt").exists() for n, o in runs.items()}
        return {
            "tables": [
                {
                    "title": "checkpoints during analysis",
                    "rows": [{"run": n, "present": p} for n, p in present.items()],
                }
            ]
        }


if "tiny-needs-models" not in EXPERIMENTS:
    EXPERIMENTS.register("tiny-needs-models")(NeedsModels)


def test_experiments_that_reembed_keep_checkpoints_until_analysed(tmp_path):
    results = run_experiment("tiny-needs-models", tmp_path, progress=False)
    assert all(row["present"] for row in results["tables"][0]["rows"])
    assert not list(tmp_path.glob("*/checkpoint.pt"))


@pytest.mark.slow
def test_parallel_jobs_give_the_same_runs_as_one_at_a_time(finished, tmp_path):
    out, sequential = finished
    parallel = run_experiment("tiny-test", tmp_path, progress=False, jobs=2)
    assert parallel["tables"] == sequential["tables"]
    for name in ("digits-magnet", "digits-triplet"):
        one = json.loads((out / name / "metrics.json").read_text())
        two = json.loads((tmp_path / name / "metrics.json").read_text())
        assert two["knc_error"] == one["knc_error"] and two["map_at_r"] == one["map_at_r"]
        assert not (tmp_path / name / "checkpoint.pt").exists()


@pytest.mark.slow
def test_parallel_failure_is_reported(tmp_path):
    bad = [
        RunSpec(
            f"bad-{i}",
            {
                **TINY,
                "loss.name": "magnet",
                "data.name": "mnist",
                "data.data_dir": str(tmp_path / "missing"),
            },
        )
        for i in range(2)
    ]
    with pytest.raises(Exception, match="missing"):
        train_runs(bad, tmp_path, progress=False, jobs=2)


@pytest.mark.parametrize("jobs,match", [(0, "jobs must be >= 1"), (1.5, "jobs must be an int")])
def test_bad_jobs_are_refused(tmp_path, jobs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        train_runs([], tmp_path, jobs=jobs)


@pytest.mark.slow
def test_finished_only_analyses_the_finished_runs_and_lists_the_missing(
    finished, tmp_path, monkeypatch
):
    out, _ = finished
    import shutil

    shutil.copytree(out / "digits-magnet", tmp_path / "digits-magnet")

    def no_training(*args, **kwargs):
        raise AssertionError("finished_only trained a run")

    monkeypatch.setattr(parallel, "train", no_training)
    results = run_experiment("tiny-test", tmp_path, progress=False, finished_only=True)
    assert set(results["runs"]) == {"digits-magnet"}
    assert results["partial"] == {"finished": 1, "total": 2, "missing": ["digits-triplet"]}
    assert [r["loss"] for r in results["tables"][0]["rows"]] == ["magnet"]
    assert (
        "Partial results: 1 of 2 runs finished.** Missing: digits-triplet"
        in (tmp_path / "report.md").read_text()
    )


def test_finished_only_with_nothing_finished_says_so(tmp_path):
    with pytest.raises(ValueError, match="no run of experiment 'tiny-test' has finished"):
        run_experiment("tiny-test", tmp_path, progress=False, finished_only=True)


@pytest.mark.slow
def test_complete_results_are_not_marked_partial(finished):
    _, results = finished
    assert "partial" not in results


@pytest.mark.slow
def test_a_rerun_that_trains_nothing_keeps_the_provenance(finished, tmp_path, monkeypatch):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(finished[0], out)
    results = json.loads((out / "results.json").read_text())
    results.update(
        command="magnetdml experiment tiny-test (the measuring run)",
        wall_seconds=123.0,
        runs_trained=4,
    )
    (out / "results.json").write_text(json.dumps(results))

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was retrained")

    monkeypatch.setattr(parallel, "train", no_training)
    # another data folder is a machine setting too (a clone elsewhere), not another run
    again = run_experiment(
        "tiny-test",
        out,
        progress=False,
        finished_only=True,
        command="magnetdml experiment tiny-test --finished-only",
        overrides={"data.data_dir": str(tmp_path / "elsewhere")},
    )
    assert again["command"] == "magnetdml experiment tiny-test (the measuring run)"
    assert again["wall_seconds"] == 123.0 and again["runs_trained"] == 4
    assert again["reanalysed_by"] == "magnetdml experiment tiny-test --finished-only"
    assert "(the measuring run)" in (out / "report.md").read_text()


def test_one_job_says_training_when_a_run_starts_not_all_at_once(tmp_path):
    messages = []
    run_experiment("tiny-test", tmp_path / "x", progress=False, log=messages.append)
    starts = [i for i, m in enumerate(messages) if m.startswith("training ")]
    finishes = [i for i, m in enumerate(messages) if m.startswith("finished ")]
    assert len(starts) == len(finishes) >= 2
    assert all(s < f for s, f in zip(starts, finishes, strict=True))
    assert starts[1] > finishes[0]  # the second starts after the first ended


def test_a_kept_run_trains_on_when_the_experiment_asks_for_more_epochs(tmp_path):
    from magnetdml.experiments import RunSpec, train_runs

    spec = RunSpec(
        "r",
        {
            "data.name": "digits",
            "model.backbone": "mlp",
            "train.epochs": 1,
            "train.iterations_per_epoch": 3,
            "train.threads": 1,
            "eval.plots": False,
            "loss.name": "softmax",
        },
    )
    train_runs([spec], tmp_path, keep_checkpoints=True, progress=False)
    longer = RunSpec("r", {**spec.overrides, "train.epochs": 2})
    runs = train_runs([longer], tmp_path, keep_checkpoints=True, progress=False)
    assert runs["r"].summary["epochs"] == 2 and len(runs["r"].history) == 2
    other = RunSpec("r", {**spec.overrides, "train.epochs": 3, "train.lr": 0.01})
    with pytest.raises(ValueError, match="holds a finished run with a different config"):
        train_runs([other], tmp_path, progress=False)


def test_a_loss_override_reaches_the_runs_whose_loss_reads_it(tmp_path):
    from magnetdml.experiments.run_stage import check_applicable, run_config

    given = {"loss.alpha": 2.0, "train.epochs": 3}
    magnet = run_config(RunSpec("m", {**TINY, "loss.name": "magnet"}), tmp_path, overrides=given)
    triplet = run_config(RunSpec("t", {**TINY, "loss.name": "triplet"}), tmp_path, overrides=given)
    assert (magnet.loss.alpha, magnet.train.epochs) == (2.0, 3)
    assert (triplet.loss.alpha, triplet.train.epochs) == (1.0, 3)  # alpha is not triplet's
    check_applicable(given, ["magnet", "triplet"])
    with pytest.raises(
        ValueError,
        match=r"loss.alpha applies to none of this experiment's "
        r"losses \(softmax, triplet\); drop it",
    ):
        check_applicable(given, ["softmax", "triplet"])
