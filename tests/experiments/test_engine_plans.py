"""One engine: the experiments that compare losses plan their searches and runs exactly as
``magnetdml benchmark`` does. The published benchmark commands are read from
``benchmarks/benchmark_runs.sh`` itself (run with a stand-in ``magnetdml`` that records its
arguments), parsed by the real command line, and planned by the engine; the experiments' plans
must give the same configs, search for search and run for run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from magnetdml.cli import build_parser, main
from magnetdml.cli.train import config_from_run_arguments
from magnetdml.experiments import benchmark as benchmark_module
from magnetdml.experiments import classification_tuned, finegrained
from magnetdml.experiments.benchmark_plan import benchmark_plan
from magnetdml.experiments.run_stage import run_config
from magnetdml.training import config_to_dict
from magnetdml.training.run_identity import run_identity

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "benchmark_runs.sh"
DATA = "DATA"  # the script's DATA_ROOT: only compared, never read
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
#: the published script is in the repository, not in the sdist
needs_script = pytest.mark.skipif(
    not SCRIPT.is_file(), reason="outside the repository (the sdist has no benchmarks/)"
)


def _script_calls(tmp_path: Path, stage: str) -> list[list[str]]:
    """The ``magnetdml`` command lines of one stage of the script, in order."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    fake = bin_dir / "magnetdml"
    fake.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"with open({str(log)!r}, 'a') as f:\n    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["bash", str(SCRIPT), DATA, stage], cwd=tmp_path, env=env, check=True)
    return [json.loads(line) for line in log.read_text().splitlines()]


def _benchmark_settings(argv: list[str], monkeypatch) -> dict:
    """What ``magnetdml benchmark ARGV`` passes to :func:`run_benchmark` (nothing trains)."""
    seen = {}

    def record(dataset, losses, out, **kwargs):
        seen.update(dataset=dataset, losses=losses, out=out, **kwargs)
        return {"protocols": {}}

    monkeypatch.setattr(benchmark_module, "run_benchmark", record)
    assert main(argv) == 0
    return seen


def _engine_plan(settings: dict, classes: int):
    """The plan ``run_benchmark`` makes of these settings (its data's class count given)."""
    return benchmark_plan(
        settings["dataset"],
        settings["losses"],
        seeds=settings["seeds"],
        epochs=settings["epochs"],
        patience=settings["patience"],
        protocols=settings["protocols"],
        data_dir=settings["data_dir"],
        overrides=settings["overrides"],
        classes=classes,
    )


def _identity(config, init_from: str | None = None) -> dict:
    """A run's config as a finished run is compared (machine fields and ``out`` dropped),
    its warm-start cache and the path of its starting weights aside."""
    tree = run_identity(config_to_dict(config))
    tree["train"].pop("warm_start_cache", None)
    assert bool(tree["model"]["init_from"]) == (init_from is not None)
    tree["model"]["init_from"] = None
    return tree


def _same_plans(engine, specs, prefix: str, out: Path, pretrained: str | None) -> None:
    """Every search / run of the engine has the experiment's ``prefix + name`` twin with the
    same config, group labels and pinned fields (the starting weights: the engine's given
    path, the experiment's pretraining run ``pretrained``)."""
    mine = {spec.name: spec for spec in specs}
    assert {prefix + spec.name for spec in engine} <= set(mine)
    for spec in engine:
        twin = mine[prefix + spec.name]
        assert twin.group.items() >= spec.group.items() and twin.pinned == spec.pinned
        assert twin.init_from == pretrained
        ours = run_config(twin, out, data_root=DATA, runs_dir=out)
        theirs = run_config(spec, out)
        assert _identity(ours, pretrained) == _identity(theirs, pretrained), spec.name
        if pretrained:
            assert Path(ours.model.init_from) == out / pretrained


@needs_script
def test_finegrained_plans_the_benchmark_runs_of_the_published_script(tmp_path, monkeypatch):
    calls = _script_calls(tmp_path, "finegrained")
    # each target stage pretrains first (once the checkpoint exists, the script skips it)
    trains = [c for c in calls if c[0] == "train"]
    benchmarks = [c for c in calls if c[0] == "benchmark"]
    assert len(benchmarks) == 3 and trains and all(c == trains[0] for c in trains)
    pretrain = trains[0]
    experiment = finegrained.FineGrained()
    specs, tuning = experiment.specs(quick=False), experiment.tuning(quick=False)
    out = tmp_path / "experiment"
    # the pretraining: the script's `magnetdml train` config
    args = build_parser("train").parse_args(pretrain)
    ours = run_config(experiment.pretraining(quick=False)[0], out, data_root=DATA)
    assert _identity(ours) == _identity(config_from_run_arguments(args))
    for argv, target in zip(benchmarks, finegrained.TARGETS, strict=True):
        settings = _benchmark_settings(argv, monkeypatch)
        assert settings["out"].name == f"omniglot-{target}"
        assert tuple(settings["losses"]) == finegrained.LOSSES
        assert settings["protocols"] == ("seen",)
        assert settings["trials"] == experiment.tuning_trials(quick=False)
        assert settings["seeds"] == finegrained.SEEDS and not settings["space"]
        engine = _engine_plan(settings, classes=finegrained.CLASSES)
        for mine, theirs in ((specs, engine.runs), (tuning, engine.tuning)):
            _same_plans(theirs, mine, f"{target}-pretrained-", out, finegrained.PRETRAINED)
        # the scratch controls: the same benchmark of the paper's losses, without the start
        settings["overrides"].pop("model.init_from")
        settings["losses"] = list(finegrained.PAPER_LOSSES)
        scratch = _engine_plan(settings, classes=finegrained.CLASSES)
        for mine, theirs in ((specs, scratch.runs), (tuning, scratch.tuning)):
            _same_plans(theirs, mine, f"{target}-scratch-", out, None)
    # nothing else is tuned: every search is one of the engine's
    assert len(tuning) == 3 * (len(finegrained.LOSSES) + len(finegrained.PAPER_LOSSES))


def test_classification_tuned_plans_the_benchmark_of_each_dataset(tmp_path, monkeypatch):
    experiment = classification_tuned.TunedClassification()
    specs, tuning = experiment.specs(quick=False), experiment.tuning(quick=False)
    out = tmp_path / "experiment"
    for dataset, (epochs, patience) in classification_tuned.BUDGET.items():
        argv = [
            "benchmark",
            "--dataset",
            dataset,
            "--losses",
            "softmax,triplet,magnet",
            "--protocols",
            "seen",
            f"--model.backbone={classification_tuned.BACKBONES[dataset]}",
            "--train.iterations_per_epoch=0",
            "--train.warm_start_epochs=1",
            "--train.warm_start_lr=0.05",
            f"--epochs={epochs}",
            f"--patience={patience}",
            f"--trials={classification_tuned.TRIALS}",
            f"--seeds={classification_tuned.SEEDS}",
        ]
        engine = _engine_plan(_benchmark_settings(argv, monkeypatch), classes=10)
        _same_plans(engine.runs, specs, f"{dataset}-", out, None)
        _same_plans(engine.tuning, tuning, f"{dataset}-", out, None)
    assert len(specs) == 3 * 3 * 3 and len(tuning) == 3 * 3
    assert experiment.tuning_trials(quick=False) == classification_tuned.TRIALS


@needs_script
def test_classification_tuned_cifar10_runs_are_the_published_scripts(tmp_path, monkeypatch):
    (argv,) = _script_calls(tmp_path, "cifar10")
    settings = _benchmark_settings(argv, monkeypatch)
    assert settings["trials"] == classification_tuned.TRIALS
    assert settings["seeds"] == classification_tuned.SEEDS
    settings["losses"] = list(classification_tuned.LOSSES)  # the script adds ProxyAnchor
    engine = _engine_plan(settings, classes=10)
    experiment = classification_tuned.TunedClassification()
    out = tmp_path / "experiment"
    _same_plans(engine.runs, experiment.specs(quick=False), "cifar10-", out, None)
    _same_plans(engine.tuning, experiment.tuning(quick=False), "cifar10-", out, None)


def test_a_space_range_goes_to_each_loss_that_searches_it():
    from magnetdml.experiments.benchmark_plan import loss_space

    ranges = loss_space({"clusters_per_class": "1:3", "lr": "1e-3:1e-2"}, ["softmax", "magnet"])
    assert ranges("softmax") == {"lr": "1e-3:1e-2"}
    assert ranges("magnet") == {"clusters_per_class": "1:3", "lr": "1e-3:1e-2"}
    assert loss_space({"weight_decay": "1e-5:1e-4"}, ["softmax"])("softmax")  # any loss's
    with pytest.raises(ValueError, match="space.lr must be LOW:HIGH"):
        loss_space({"lr": "1e-2:1e-3"}, ["softmax"])
    with pytest.raises(ValueError, match="unknown search parameter space.nope"):
        loss_space({"nope": "1:2"}, ["softmax"])


def test_a_space_flag_no_benchmarked_loss_searches_is_one_line(tmp_path, capsys):
    argv = ["benchmark", "--dataset", "digits", "--losses", "softmax,triplet"]
    assert main([*argv, "--space.alpha", "1:2", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(
        "space.alpha applies to none of the benchmarked losses (softmax, triplet); drop "
        "the flag or add a loss that searches it"
    )
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_a_space_flag_narrows_the_benchmark_searches(tmp_path):
    out = tmp_path / "b"
    argv = [
        "benchmark",
        "--dataset=digits",
        "--losses=magnet,softmax",
        "--protocols=seen",
        "--trials=1",
        "--seeds=1",
        "--epochs=1",
        "--quiet",
        "--train.threads=1",
        "--model.embedding_dim=16",
        "--train.iterations_per_epoch=4",
        "--space.clusters_per_class=2",
        "--space.lr=0.01",
        f"--out={out}",
    ]
    assert main(argv) == 0
    for loss, k in (("magnet", 2), ("softmax", None)):
        config = json.loads(
            (out / "tuning" / f"seen-{loss}" / "trial_000" / "config.json").read_text()
        )
        assert config["train"]["lr"] == 0.01
        if k:
            assert config["index"]["clusters_per_class"] == k
    results = json.loads((out / "results.json").read_text())
    assert results["benchmark"]["space"] == {"clusters_per_class": "2", "lr": "0.01"}


@pytest.mark.slow
def test_classification_tuned_quick_reports_the_benchmarks_tables(tmp_path, monkeypatch):
    from magnetdml.experiments import run_experiment

    # the quick version's plan on digits (no data files needed)
    monkeypatch.setattr(
        classification_tuned.TunedClassification, "_datasets", lambda self, quick: ("digits",)
    )
    flags = {"train.threads": 1, "model.embedding_dim": 16, "eval.knn_k": 8}
    results = run_experiment(
        "classification-tuned", tmp_path, quick=True, overrides=flags, progress=False
    )
    assert set(results["runs"]) == {
        f"digits-seen-{loss}-s0" for loss in ("softmax", "triplet", "magnet")
    }
    assert set(results["tuned"]) == {
        f"digits-seen-{loss}" for loss in ("softmax", "triplet", "magnet")
    }
    titles = [t["title"] for t in results["tables"]]
    assert any(t.startswith("digits: Seen classes") for t in titles)
    assert set(results["protocols"]["digits"]["ranking"]) == {"softmax", "triplet", "magnet"}
    curves = next(t for t in results["tables"] if "validation error stop" in t["title"])
    assert {r["loss"] for r in curves["rows"]} == {"softmax", "triplet", "magnet"}
    assert (tmp_path / "figures" / "digits-seen_studies.png").is_file()
    assert "Optuna" in (tmp_path / "report.md").read_text()
