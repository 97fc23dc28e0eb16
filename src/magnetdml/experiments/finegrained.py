"""``finegrained``: the paper's own regime (§4.1) -- many classes, few images, a partly
pretrained backbone, every loss tuned and trained to convergence.

The paper fine-tunes a GoogLeNet pretrained on ImageNet "for 3 epochs only" on Stanford Dogs,
Oxford Flowers and Oxford-IIIT Pet (100+ classes, tens of images each), every loss tuned by
random search. Here, on Omniglot's background set (964 characters, 30 alphabets, one drawing
of each character by each of 20 drawers):

* **Split by drawer**, the same for every character: drawers 1-13 train, 14-15 validation,
  16-20 test (5 test drawings per character). Nothing below ever trains on a validation or
  test drawing.
* **Pretraining** ("ImageNet"): softmax on the training drawings of all 964 characters -- a
  superset of every target's classes, as ImageNet is of Dogs' -- for ``PRETRAIN_EPOCHS``
  passes only (partly trained). A reference run of the same pretraining trained to
  convergence (``pretrain-converged``, never fine-tuned) says how far from converged that is.
* **Targets** ("Dogs / Flowers / Pets"): three groups of related alphabets (``TARGETS``,
  155-179 characters each: fine-grained, as the scripts of a group resemble each other).
* **Every loss** (softmax, triplet, Magnet) starts from the same pretrained weights (backbone
  and 64-d embedding head; softmax gets a fresh classifier over the target's classes), is
  tuned per target by its own random search on the validation drawers (:mod:`.tuning`; Magnet
  with ``loss.scale``, ``K`` in 1-3 since a character has 13 training drawings), then trained
  **to convergence**: ``train.patience`` -- stop once the validation error (own protocol) has
  not improved for ``PATIENCE`` passes (at most ``MAX_EPOCHS``), and score the best pass's
  model (:mod:`magnetdml.training.early_stopping`); 3 seeds; test error per pass recorded.
* **Controls**: the same targets from scratch (no pretraining), tuned the same way.
* **Hierarchy recovery** (§4.3) in this regime: on the first target, random pairs of
  characters collapsed into one label (pretrained start, the target's tuned configs, ``K =
  4`` clusters per coarse class), scored on the fine labels.

Each run is scored on the test drawers with each loss's own protocol (kNC for Magnet, soft
kNN ``k = 128`` for the others; paper App. B) and the other one, Error@1 and Error@5. The final
models stay in their run folders (``magnetdml evaluate RUN``), and ``tuned.json`` holds the
tuned configs (``--tuned DIR`` lets another experiment reuse them). The analysis is
:mod:`.finegrained_analysis`.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..losses import loss_spec
from .runner import EXPERIMENTS, Experiment, RunOutcome, RunSpec

LOSSES = ("softmax", "triplet", "magnet")
#: Target name -> its alphabets (the background set's folder names).
TARGETS = {
    "indic": ("Bengali", "Gujarati", "Grantha", "Sanskrit"),  # 179
    "east-asian": (
        "Japanese_(hiragana)",
        "Japanese_(katakana)",
        "Korean",
        "Burmese_(Myanmar)",
    ),  # 173
    "caucasian-cyrillic": (
        "Armenian",
        "Mkhedruli_(Georgian)",
        "Asomtavruli_(Georgian)",
        "Cyrillic",
    ),  # 155
}
TEST_DRAWERS, VAL_DRAWERS = (16, 17, 18, 19, 20), (14, 15)
STARTS = ("pretrained", "scratch")
SEEDS = (0, 1, 2)
PRETRAIN_EPOCHS, PRETRAIN_LR = 3, 0.05
MAX_EPOCHS, PATIENCE = 60, 6
TRIAL_EPOCHS, TRIAL_PATIENCE, TRIALS = 20, 3, 8
HIERARCHY_TARGET, HIERARCHY_CLUSTERS = "indic", 4
#: Everything every run shares: small CNN, 64-d head, batches of 48 (softmax uniform, triplet
#: 6 x 8 class-balanced, Magnet M x D <= 48 tuned), one pass per epoch, no warm start (the
#: pretraining is the warm start), test error after every pass.
COMMON = {
    "data.name": "omniglot",
    "model.backbone": "small-cnn",
    "model.embedding_dim": 64,
    "sampler.classes_per_batch": 6,
    "sampler.examples_per_class": 8,
    "sampler.clusters_per_batch": 12,
    "sampler.examples_per_cluster": 4,
    "train.iterations_per_epoch": 0,
    "train.warm_start_epochs": 0,
    "eval.every": 1,
    "eval.plots": False,
}
PRETRAINED = "pretrain"


def data_options(target: str | None) -> str:
    """``data.options`` of a target (None: all 964 characters) with the drawer split."""
    options = {"test_drawers": list(TEST_DRAWERS), "val_drawers": list(VAL_DRAWERS)}
    if target is not None:
        options["alphabets"] = list(TARGETS[target])
    return json.dumps(options)  # JSON is YAML: alphabet names with ( ) stay intact


class FineGrained(Experiment):
    name = "finegrained"
    description = (
        "The paper's regime (§4.1) on Omniglot: softmax pretraining on all 964 "
        "characters for a few passes, then softmax, triplet and Magnet fine-tuned "
        "on three fine-grained groups of alphabets, each tuned by its own search "
        "and trained until the validation error stops improving; from-scratch "
        "controls, convergence speed (Fig. 5) and hierarchy recovery (§4.3)."
    )
    keeps_models = True

    def _plan(self, quick: bool) -> dict:
        if quick:  # minutes: one target, one seed, a few passes
            return {
                "targets": tuple(TARGETS)[:1],
                "seeds": (0,),
                "pretrain_epochs": 1,
                "max": 6,
                "patience": 3,
                "trial_epochs": 3,
                "trial_patience": 2,
                "trials": 2,
                "reference": None,
            }
        return {
            "targets": tuple(TARGETS),
            "seeds": SEEDS,
            "pretrain_epochs": PRETRAIN_EPOCHS,
            "max": MAX_EPOCHS,
            "patience": PATIENCE,
            "trial_epochs": TRIAL_EPOCHS,
            "trial_patience": TRIAL_PATIENCE,
            "trials": TRIALS,
            "reference": 50,
        }

    def pretraining(self, quick: bool) -> list[RunSpec]:
        plan = self._plan(quick)
        base = {
            **COMMON,
            "data.options": data_options(None),
            "loss.name": "softmax",
            "train.lr": PRETRAIN_LR,
            "train.seed": 0,
        }
        specs = [
            RunSpec(
                PRETRAINED,
                {**base, "train.epochs": plan["pretrain_epochs"]},
                {"stage": "pretraining", "role": "used"},
            )
        ]
        if plan["reference"]:
            specs.append(
                RunSpec(
                    f"{PRETRAINED}-converged",
                    {
                        **base,
                        "train.epochs": plan["reference"],
                        "train.patience": plan["patience"] // 2,
                    },
                    {"stage": "pretraining", "role": "reference"},
                )
            )
        return specs

    def specs(self, quick: bool) -> list[RunSpec]:
        plan = self._plan(quick)
        budget = {"train.epochs": plan["max"], "train.patience": plan["patience"]}
        specs = []
        for target in plan["targets"]:
            for start in STARTS:
                for loss in LOSSES:
                    for seed in plan["seeds"]:
                        specs.append(
                            RunSpec(
                                f"{target}-{start}-{loss}-s{seed}",
                                {
                                    **COMMON,
                                    **budget,
                                    "data.options": data_options(target),
                                    "loss.name": loss,
                                    "train.seed": seed,
                                },
                                _group(target, start, loss, seed, "classification"),
                                init_from=PRETRAINED if start == "pretrained" else None,
                            )
                        )
        target = plan["targets"][0] if quick else HIERARCHY_TARGET
        for loss in LOSSES:
            for seed in plan["seeds"]:
                specs.append(
                    RunSpec(
                        f"{target}-pairs-{loss}-s{seed}",
                        {
                            **COMMON,
                            **budget,
                            "data.options": data_options(target),
                            "data.collapse_pairs": True,
                            "index.clusters_per_class": HIERARCHY_CLUSTERS,
                            "loss.name": loss,
                            "train.seed": seed,
                        },
                        _group(target, "pretrained", loss, seed, "hierarchy"),
                        init_from=PRETRAINED,
                        pinned=("index.clusters_per_class",),
                    )
                )
        return specs

    def tuning(self, quick: bool) -> list[RunSpec]:
        plan = self._plan(quick)
        budget = {
            "train.epochs": plan["trial_epochs"],
            "train.patience": plan["trial_patience"],
            "eval.every": 0,
            "train.seed": 0,
        }
        return [
            RunSpec(
                f"{target}-{start}-{loss}",
                {**COMMON, **budget, "data.options": data_options(target), "loss.name": loss},
                {"dataset": "omniglot", "target": target, "start": start, "loss": loss},
                init_from=PRETRAINED if start == "pretrained" else None,
            )
            for target in plan["targets"]
            for start in STARTS
            for loss in LOSSES
        ]

    def tuning_trials(self, quick: bool) -> int:
        return self._plan(quick)["trials"]

    def tuning_space(self, spec: RunSpec) -> dict[str, str]:
        # 13 training drawings per character: up to 3 clusters of >= 4 members
        return {"clusters_per_class": "1:3"} if loss_spec(spec.group["loss"]).uses_index else {}

    def analyse(self, out_dir: Path, runs: dict[str, RunOutcome]) -> dict:
        from .finegrained_analysis import analyse

        return analyse(Path(out_dir), runs)


def _group(target: str, start: str, loss: str, seed: int, task: str) -> dict:
    return {
        "dataset": "omniglot",
        "target": target,
        "start": start,
        "loss": loss,
        "seed": seed,
        "task": task,
    }


EXPERIMENTS.register("finegrained")(FineGrained)
