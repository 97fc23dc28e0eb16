"""``finegrained``: its plan (pretraining, targets, tuning, controls, hierarchy) and a real
end-to-end run of its quick version on a tiny Omniglot-shaped npz."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from magnetdml.cli import main
from magnetdml.experiments import EXPERIMENTS, finegrained, run_experiment
from magnetdml.experiments.classification import own_metric
from magnetdml.experiments.finegrained import FineGrained
from magnetdml.training.config import Config, DataConfig


def test_the_full_plan():
    experiment = FineGrained()
    pre = experiment.pretraining(quick=False)
    assert [s.name for s in pre] == ["pretrain", "pretrain-converged"]
    assert pre[0].overrides["train.epochs"] == finegrained.PRETRAIN["train.epochs"]
    assert "alphabets" not in yaml.safe_load(pre[0].overrides["data.options"])  # all 964
    specs = experiment.specs(quick=False)
    runs = [s for s in specs if s.group["task"] == "classification"]
    pretrained = [s for s in runs if s.group["start"] == "pretrained"]
    assert len(pretrained) == 3 * len(finegrained.LOSSES) * 3  # targets x losses x seeds
    assert len(runs) - len(pretrained) == 3 * 3 * 3  # scratch: the paper's losses
    for spec in runs:
        assert spec.init_from == ("pretrain" if spec.group["start"] == "pretrained" else None)
        assert spec.overrides["train.patience"] == finegrained.PATIENCE
        assert spec.overrides["eval.every"] == 0  # the benchmark's: validation per pass only
        options = yaml.safe_load(spec.overrides["data.options"])
        assert options["alphabets"] == list(finegrained.TARGETS[spec.group["target"]])
        assert set(options["test_drawers"]).isdisjoint(options["val_drawers"])
    pairs = [s for s in specs if s.group["task"] == "hierarchy"]
    assert len(pairs) == 3 * 3 and all(s.overrides["data.collapse_pairs"] for s in pairs)
    assert all(
        s.pinned == ("train.seed", "index.clusters_per_class") and s.init_from == "pretrain"
        for s in pairs
    )
    tuning = experiment.tuning(quick=False)
    assert len(tuning) == 3 * (len(finegrained.LOSSES) + 3)
    assert experiment.tuning_trials(quick=False) == finegrained.TRIALS == 8
    # every run (hierarchy ones included) belongs to exactly one search's group
    for spec in specs:
        matches = [t for t in tuning if all(spec.group.get(k) == v for k, v in t.group.items())]
        assert len(matches) == 1, spec.name
    # the benchmark's budget: no space of the experiment's own, trials at the full budget
    assert experiment.tuning_space(tuning[2]) == {}
    assert all(t.overrides["train.epochs"] == finegrained.MAX_EPOCHS for t in tuning)
    # the options are valid data options of the config
    DataConfig(name="omniglot", options=runs[0].overrides["data.options"]).loader_options()
    Config().validate()


@pytest.mark.skipif(
    not os.environ.get("MAGNETDML_DATA_ROOT"),
    reason="needs the real Omniglot background set (MAGNETDML_DATA_ROOT)",
)
def test_targets_are_fine_grained_groups_of_at_least_150_characters():
    from magnetdml.data import load_dataset

    root = Path(os.environ["MAGNETDML_DATA_ROOT"]) / "omniglot"
    for target in finegrained.TARGETS:
        options = yaml.safe_load(finegrained.data_options(target))
        splits = load_dataset("omniglot", root, **options)
        assert splits.num_classes >= 150, target
        assert np.bincount(splits.train.labels).tolist() == [13] * splits.num_classes


ALPHABETS = ["Alpha", "Beta", "Delta", "Gamma"]
PML = "pml:ProxyAnchorLoss"  # one of the field's losses, through every stage


def _tiny_omniglot(root: Path) -> None:
    """4 alphabets x 4 characters x 20 drawings of 28x28: a prototype per character + noise."""
    rng = np.random.default_rng(0)
    classes = len(ALPHABETS) * 4
    prototypes = rng.random((classes, 28, 28)) < 0.15
    flips = rng.random((classes * 20, 28, 28)) < 0.05
    images = np.where(np.repeat(prototypes, 20, axis=0) ^ flips, 0, 255).astype(np.uint8)
    (root / "omniglot").mkdir(parents=True)
    np.savez_compressed(
        root / "omniglot" / "omniglot_background.npz",
        images=images,
        labels=np.repeat(np.arange(classes), 20).astype(np.int16),
        alphabet=np.repeat(ALPHABETS, 4),
        character=np.array([f"character{i % 4 + 1:02d}" for i in range(classes)]),
    )


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    _tiny_omniglot(root)
    out = tmp_path_factory.mktemp("finegrained")
    patch = pytest.MonkeyPatch()
    patch.setattr(finegrained, "TARGETS", {"tiny": ("Alpha", "Beta")})
    patch.setattr(finegrained, "QUICK_LOSSES", (*finegrained.PAPER_LOSSES, PML))
    # 8 characters, 4 pairs of them: batches of 4 classes x 4 drawings, and for Magnet of
    # 4 x 4 neighbourhoods (4 pairs x K = 4 clusters leave 12 impostor clusters)
    small = {
        "sampler.classes_per_batch": 4,
        "sampler.examples_per_class": 4,
        "sampler.clusters_per_batch": 4,
        "sampler.examples_per_cluster": 4,
    }
    try:
        results = run_experiment(
            "finegrained",
            out,
            quick=True,
            data_root=root,
            overrides={"train.threads": 1, "model.embedding_dim": 16, **small},
            progress=False,
        )
    finally:
        patch.undo()
    return out, results


@pytest.mark.slow
def test_quick_runs_every_stage_and_scores_the_kept_models(quick):
    out, results = quick
    names = set(results["runs"])
    assert {
        "pretrain",
        "tiny-pretrained-seen-magnet-s0",
        "tiny-pretrained-seen-pml-ProxyAnchorLoss-s0",
        "tiny-scratch-seen-softmax-s0",
        "tiny-pairs-triplet-s0",
    } <= names and "partial" not in results
    assert len(json.loads((out / "tuned.json").read_text())) == 4 + 3  # pretrained, scratch
    for name in names - {"pretrain"}:
        config = json.loads((out / name / "config.json").read_text())
        init_from = config["model"]["init_from"]  # relative: results travel
        if "scratch" in name:
            assert init_from == "", name
        else:
            assert Path(init_from).resolve() == (out / "pretrain").resolve(), name
        assert (out / name / "checkpoint.pt").is_file()  # the final models stay
        summary = json.loads((out / name / "metrics.json").read_text())
        assert summary["early_stopping"]["patience"] == 2
        if "pairs" in name:
            assert config["index"]["clusters_per_class"] == finegrained.HIERARCHY_CLUSTERS
            continue
        # the re-embedded Error@1 is the error training reported: the checkpoint is the
        # scored (best-validation) model
        measured = json.loads((out / name / "measured.json").read_text())["values"]
        loss = config["loss"]["name"]
        own = "knc" if own_metric(loss) == "knc_error" else "knn"
        assert measured[f"{own}_error_at_1"] == pytest.approx(summary[own_metric(loss)])
        assert measured[f"{own}_error_at_5"] <= measured[f"{own}_error_at_1"]


@pytest.mark.slow
def test_quick_report_tables_and_claims(quick):
    out, results = quick
    titles = [t["title"] for t in results["tables"]]
    # the experiment's 7, then the benchmark's 3 (scores, paired differences, cost) for
    # each target and start
    assert len(titles) == 7 + 2 * 3
    assert titles[7].startswith("tiny, pretrained start: Seen classes")
    assert "paired difference against the best loss" in titles[8]
    assert set(results["protocols"]) == {"tiny-pretrained", "tiny-scratch"}
    assert set(results["protocols"]["tiny-pretrained"]["ranking"]) == {
        *finegrained.PAPER_LOSSES,
        PML,
    }
    diagnostics = {(r["start"], r["loss"]): r for r in results["tables"][5]["rows"]}
    magnet = diagnostics[("pretrained", "magnet")]
    assert magnet["sigma2"] > 0 and 1 <= magnet["clusters_per_class"] <= 6  # 13 drawings
    assert 0 <= magnet["draws_with_replacement"] <= 1 and 0 < magnet["refresh_share"] < 1
    errors = results["tables"][0]["rows"]
    assert {(r["start"], r["loss"]) for r in errors} == {
        (s, loss) for s in ("pretrained", "scratch") for loss in finegrained.PAPER_LOSSES
    } | {("pretrained", PML)}
    (speed,) = results["tables"][3]["rows"]  # on the validation drawers' curves
    assert speed["seeds"] == 1 and speed["magnet_reached"] in (0, 1)
    controls = results["tables"][2]["rows"]
    assert all(
        r["error_drop"] == pytest.approx(r["scratch_error"] - r["pretrained_error"])
        for r in controls
    )
    assert len(results["tables"][4]["rows"]) == 3  # hierarchy, per loss
    claims = [c["claim"] for c in results["claims"]]
    assert any("below softmax" in c for c in claims)
    assert any("recovers the characters" in c for c in claims)
    assert all(c["holds"] in (True, False, None) for c in results["claims"])
    report = (out / "report.md").read_text()
    assert "Hierarchy recovery" in report and "errors_tiny.png" in report
    assert "tiny-pretrained-seen_studies.png" in report


@pytest.mark.slow
def test_a_kept_final_model_is_evaluated_from_the_command_line(quick, capsys):
    out, _ = quick
    assert main(["evaluate", str(out / "tiny-pretrained-seen-magnet-s0")]) == 0
    assert "knc_error" in capsys.readouterr().out


def test_finegrained_is_registered():
    assert "finegrained" in EXPERIMENTS
