"""The runner's pretraining stage: runs and tuning trials that start from a pretraining run,
pinned fields, per-search spaces, and experiments that keep their final models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from magnetdml.experiments import EXPERIMENTS, Experiment, RunSpec, run_experiment, save_results

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


class TinyPretrained(Experiment):
    name = "tiny-pretrained-test"
    description = "softmax pretraining, then Magnet from it: tuned, one run pinned"
    keeps_models = True

    def pretraining(self, quick):
        return [RunSpec("pre", {**TINY, "loss.name": "softmax"}, {"stage": "pretraining"})]

    def specs(self, quick):
        return [
            RunSpec(
                "from-pre",
                {**TINY, "loss.name": "magnet"},
                {"dataset": "digits", "loss": "magnet"},
                init_from="pre",
            ),
            RunSpec(
                "pinned",
                {**TINY, "loss.name": "magnet", "index.clusters_per_class": 3},
                {"dataset": "digits", "loss": "magnet"},
                init_from="pre",
                pinned=("index.clusters_per_class",),
            ),
            RunSpec(
                "scratch", {**TINY, "loss.name": "magnet"}, {"dataset": "digits", "loss": "magnet"}
            ),
        ]

    def tuning(self, quick):
        return [
            RunSpec(
                "digits-magnet",
                {**TINY, "loss.name": "magnet", "data.val_fraction": 0.2},
                {"dataset": "digits", "loss": "magnet"},
                init_from="pre",
            )
        ]

    def tuning_trials(self, quick):
        return 2

    def tuning_space(self, spec):
        return {"clusters_per_class": "2"}

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


if TinyPretrained.name not in EXPERIMENTS:
    EXPERIMENTS.register(TinyPretrained.name)(TinyPretrained)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrained")
    return out, run_experiment(TinyPretrained.name, out, progress=False)


def _config(folder) -> dict:
    return json.loads((folder / "config.json").read_text())


@pytest.mark.slow
def test_runs_and_trials_start_from_the_pretraining_run(pretrained):
    out, results = pretrained
    assert set(results["runs"]) == {"pre", "from-pre", "pinned", "scratch"}
    assert (out / "pre" / "checkpoint.pt").is_file()  # kept: others start from it
    pre_dir = (out / "pre").resolve()  # init_from is relative to the working folder
    assert Path(_config(out / "from-pre")["model"]["init_from"]).resolve() == pre_dir
    assert _config(out / "scratch")["model"]["init_from"] == ""
    for trial in (out / "tuning" / "digits-magnet").glob("trial_*"):
        assert Path(_config(trial)["model"]["init_from"]).resolve() == pre_dir
    # the first weights of a run from "pre" are pre's: its training started there
    pre = torch.load(out / "pre" / "checkpoint.pt", weights_only=False)["model"]
    from magnetdml.training import apply_overrides
    from magnetdml.training.config import Config
    from magnetdml.training.distributed import Distributed
    from magnetdml.training.trainer import Trainer

    config = apply_overrides(
        Config(),
        {
            **TINY,
            "loss.name": "magnet",
            "model.init_from": str(out / "pre"),
            "out": str(out / "probe"),
        },
    ).validate()
    started = Trainer(config, Distributed.setup("cpu")).model.state_dict()
    assert all(torch.equal(started[k], v) for k, v in pre.items())


@pytest.mark.slow
def test_space_of_the_search_and_pinned_fields(pretrained):
    out, results = pretrained
    for trial in (out / "tuning" / "digits-magnet").glob("trial_*"):
        assert _config(trial)["index"]["clusters_per_class"] == 2  # tuning_space
    assert _config(out / "from-pre")["index"]["clusters_per_class"] == 2  # tuned
    assert _config(out / "pinned")["index"]["clusters_per_class"] == 3  # pinned


@pytest.mark.slow
def test_an_experiment_that_keeps_models_keeps_every_checkpoint(pretrained):
    out, _ = pretrained
    for name in ("from-pre", "pinned", "scratch"):
        assert (out / name / "checkpoint.pt").is_file()


@pytest.mark.slow
def test_a_rerun_skips_everything_finished(pretrained, monkeypatch):
    out, _ = pretrained
    from magnetdml.experiments import run_stage

    def refuse(configs, **kwargs):
        assert not configs, "nothing should train again"

    monkeypatch.setattr(run_stage, "train_all", refuse)
    again = run_experiment(TinyPretrained.name, out, progress=False)
    assert again["runs_trained"] == 0
