"""The hierarchy experiment: its runs, the per-run measurement cache and the analysis."""

import json

import numpy as np
import pytest

from magnetdml.experiments import EXPERIMENTS, RunOutcome, RunSpec
from magnetdml.experiments.hierarchy import CLUSTERS_PER_CLASS, cached_measurement, measure_run
from magnetdml.training import apply_overrides, train
from magnetdml.training.config import Config


def test_specs_train_every_loss_on_collapsed_pairs_with_one_budget():
    experiment = EXPERIMENTS.get("hierarchy")()
    quick = experiment.specs(quick=True)
    assert [s.group["loss"] for s in quick] == ["softmax", "triplet", "magnet"]
    assert experiment.keep_checkpoints
    for spec in quick:
        assert spec.overrides["data.collapse_pairs"] is True
        assert spec.overrides["index.clusters_per_class"] == CLUSTERS_PER_CLASS > 1
        assert spec.overrides["sampler.classes_per_batch"] <= 5  # 5 coarse classes
        rest = {k: v for k, v in spec.overrides.items() if k != "loss.name"}
        assert rest == {k: v for k, v in quick[0].overrides.items() if k != "loss.name"}
        apply_overrides(Config(), spec.overrides).validate()
    full = experiment.specs(quick=False)
    assert {s.group["dataset"] for s in full} == {"fashion-mnist", "cifar10"}
    assert len({s.name for s in full}) == len(full)


def outcome(tmp_path, name, loss, summary=None, seed=0, dataset="fashion-mnist"):
    run_dir = tmp_path / name
    run_dir.mkdir()
    return RunOutcome(
        RunSpec(name, {"loss.name": loss}, {"dataset": dataset, "loss": loss, "seed": seed}),
        run_dir,
        summary or {"knn_error": 0.1, "knc_error": 0.1},
        [],
    )


def write_cache(o, values):
    """Store values as cached_measurement would, keyed by the outcome's summary."""
    (o.run_dir / "checkpoint.pt").write_bytes(b"")  # lets the first computation run
    cached_measurement(o, "hierarchy.json", lambda: values)
    (o.run_dir / "checkpoint.pt").unlink()


def test_cached_measurement_reuses_the_cache_until_the_run_changes(tmp_path):
    o = outcome(tmp_path, "run", "magnet")
    calls = []
    (o.run_dir / "checkpoint.pt").write_bytes(b"")
    compute = lambda: calls.append(1) or {"x": len(calls)}  # noqa: E731
    assert cached_measurement(o, "m.json", compute) == {"x": 1}
    assert cached_measurement(o, "m.json", compute) == {"x": 1} and len(calls) == 1
    (o.run_dir / "checkpoint.pt").unlink()
    assert cached_measurement(o, "m.json", compute) == {"x": 1}  # no checkpoint needed now
    retrained = RunOutcome(o.spec, o.run_dir, {"knn_error": 0.2}, [])
    with pytest.raises(ValueError, match="no checkpoint.pt.*--keep-checkpoints --overwrite"):
        cached_measurement(retrained, "m.json", compute)


def fake_values(knn1, knn5, knc1, knc5, purity=0.9):
    return {
        "knn_error_at_1": knn1,
        "knn_error_at_5": knn5,
        "knc_error_at_1": knc1,
        "knc_error_at_5": knc5,
        "cluster_purity": purity,
        "own_index": True,
    }


def test_analyse_tables_claims_and_figures_from_known_numbers(tmp_path):
    numbers = {
        ("softmax", 0): fake_values(0.30, 0.10, 0.35, 0.12),
        ("softmax", 1): fake_values(0.32, 0.10, 0.37, 0.12),
        ("triplet", 0): fake_values(0.44, 0.05, 0.50, 0.20),
        ("magnet", 0): fake_values(0.31, 0.02, 0.28, 0.07),
    }
    runs = {}
    for (loss, seed), values in numbers.items():
        o = outcome(
            tmp_path, f"{loss}-s{seed}", loss, {"knn_error": 0.1, "knc_error": 0.08}, seed=seed
        )
        write_cache(o, values)
        runs[o.spec.name] = o
    results = EXPERIMENTS.get("hierarchy")().analyse(tmp_path, runs)
    rows = {r["loss"]: r for r in results["tables"][0]["rows"]}
    assert rows["softmax"]["seeds"] == 2
    assert rows["softmax"]["fine_error_at_1"] == pytest.approx(0.31)  # kNN, mean of seeds
    assert rows["magnet"]["fine_error_at_1"] == pytest.approx(0.28)  # kNC for Magnet
    assert rows["magnet"]["coarse_error"] == pytest.approx(0.08)
    assert rows["triplet"]["coarse_error"] == pytest.approx(0.1)
    holds = {
        c["claim"].split(" (")[0].split("than ")[1] + c["claim"].split("Error@")[1][0]: c["holds"]
        for c in results["claims"]
    }
    # Error@1: 28% < 31% softmax, < 44% triplet; Error@5: 7% < 10% softmax, > 5% triplet
    assert holds == {"softmax1": True, "triplet1": True, "softmax5": True, "triplet5": False}
    for figure in results["figures"]:
        assert (tmp_path / figure["path"]).stat().st_size > 1000
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["paper"]["magnet"]["error_at_1"] == 0.286


def test_exact_tie_is_not_counted_either_way(tmp_path):
    runs = {}
    for loss in ("softmax", "triplet", "magnet"):
        o = outcome(tmp_path, loss, loss)
        write_cache(o, fake_values(0.2, 0.0, 0.1, 0.0))
        runs[loss] = o
    claims = EXPERIMENTS.get("hierarchy")().analyse(tmp_path, runs)["claims"]
    at5 = [c for c in claims if "Error@5" in c["claim"]]
    assert [c["holds"] for c in at5] == [None, None] and "tie" in at5[0]["detail"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("hier") / "digits-magnet"
    config = apply_overrides(
        Config(),
        {
            "data.collapse_pairs": True,
            "train.epochs": 1,
            "train.iterations_per_epoch": 5,
            "train.threads": 1,
            "model.embedding_dim": 8,
            "eval.plots": False,
            "index.clusters_per_class": 4,
            "out": str(out),
        },
    )
    return out, train(config, progress=False).summary


def test_measure_run_on_a_real_run(tiny_run):
    run_dir, summary = tiny_run
    values = measure_run(run_dir)
    assert values["own_index"] is True
    for key in ("knn_error_at_1", "knn_error_at_5", "knc_error_at_1", "knc_error_at_5"):
        assert 0.0 <= values[key] <= 1.0
    assert values["knn_error_at_5"] <= values["knn_error_at_1"]
    # each cluster holds (mostly) two fine classes: its majority covers at least half
    assert 0.5 <= values["cluster_purity"] <= 1.0
    o = RunOutcome(RunSpec("r", {}), run_dir, summary, [])
    assert cached_measurement(o, "hierarchy.json", lambda: values) == values
    assert np.isfinite(list(values.values())).all()


def test_tuned_hierarchy_trains_the_classification_runs_on_coarse_pairs():
    """hierarchy-tuned: classification-tuned's runs (budget, patience, warm start, seeds),
    each on collapsed pairs with the experiment's K and batches pinned over any tuned value."""
    from magnetdml.experiments.classification_tuned import dataset_plan
    from magnetdml.experiments.hierarchy_tuned import PINNED
    from magnetdml.experiments.tuning import apply_tuned

    experiment = EXPERIMENTS.get("hierarchy-tuned")()
    specs = experiment.specs(quick=False)
    assert {s.group["dataset"] for s in specs} == {"fashion-mnist", "cifar10"}
    assert len(specs) == 2 * 3 * 3 and len({s.name for s in specs}) == len(specs)
    classification = {
        (s.group["dataset"], s.group["loss"], s.group["seed"]): s
        for d in ("fashion-mnist", "cifar10")
        for s in dataset_plan(d, losses=("softmax", "triplet", "magnet")).runs
    }
    for spec in specs:
        g = spec.group
        assert spec.name == f"{g['dataset']}-{g['loss']}-s{g['seed']}"
        theirs = classification[(g["dataset"], g["loss"], g["seed"])].overrides
        assert spec.overrides == {**theirs, **PINNED}
        assert spec.overrides["train.patience"] > 0 and spec.overrides["train.epochs"] > 1
        apply_overrides(Config(), spec.overrides).validate()
    # the searches are classification-tuned's; a tuned K or batch cannot undo the pinned ones
    assert len(experiment.tuning(quick=False)) == 2 * 3
    tuned = {
        "fm-magnet": {
            "group": {"dataset": "fashion-mnist", "loss": "magnet"},
            "params": {"train.lr": 0.0014, "index.clusters_per_class": 1, "loss.alpha": 1.7},
        },
        "fm-triplet": {
            "group": {"dataset": "fashion-mnist", "loss": "triplet"},
            "params": {"train.lr": 0.04, "sampler.classes_per_batch": 8},
        },
    }
    fm = [s for s in specs if s.group["dataset"] == "fashion-mnist"]
    fm = [s for s in fm if s.group["loss"] != "softmax"]
    for spec in apply_tuned(fm, tuned):
        assert spec.overrides["index.clusters_per_class"] == CLUSTERS_PER_CLASS
        assert spec.overrides["sampler.classes_per_batch"] == 4
        assert spec.overrides["train.lr"] in (0.0014, 0.04)
        assert spec.overrides["train.seed"] == spec.group["seed"]
