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
  superset of every target's classes, as ImageNet is of Dogs' -- for 3 passes only
  (partly trained; :data:`PRETRAIN`), as ``benchmarks/benchmark_runs.sh`` runs it. A
  reference run of the same pretraining trained to convergence (``pretrain-converged``, never
  fine-tuned) says how far from converged that is.
* **Targets** ("Dogs / Flowers / Pets"): three groups of related alphabets (``TARGETS``,
  155-179 characters each: fine-grained, as the scripts of a group resemble each other).
* **Every loss** of :data:`LOSSES` (softmax, triplet, Magnet and four of the field's modern
  losses) starts from the same pretrained weights (backbone and 64-d embedding head; the
  losses with a classifier or proxies get fresh ones over the target's classes) and is
  benchmarked by the engine of ``magnetdml benchmark`` (:mod:`.benchmark_plan`), seen-class
  protocol on the drawer split: per target and loss, an Optuna study (seeded TPE, ``TRIALS``
  trials at the full budget, median pruning on the per-pass validation error; the loss's own
  space, :mod:`.search_space`), then ``SEEDS`` runs at the tuned configuration, each trained
  until its validation error has not improved for ``PATIENCE`` passes (at most
  ``MAX_EPOCHS``) and scored with the best pass's model. These runs are exactly those of
  ``benchmarks/benchmark_runs.sh finegrained`` (tested), so the report has the benchmark's
  table per target (mean ± sd, paired differences against the best loss with 95% intervals,
  cost).
* **Controls**: the same targets from scratch (no pretraining), for the paper's three losses
  (:data:`PAPER_LOSSES`), planned and tuned by the same engine with the same budget.
* **Hierarchy recovery** (§4.3) in this regime: on the first target, random pairs of
  characters collapsed into one label (pretrained start, the paper's three losses at their
  tuned configurations for that target, ``K = 4`` clusters per coarse class), scored on the
  fine labels.

Each run is scored on the test drawers with each loss's own protocol (kNC for Magnet, soft
kNN ``k = 128`` for the others; paper App. B) and the other one, Error@1 and Error@5; the
convergence (paper Fig. 5) is read from the per-pass validation errors. The final models stay
in their run folders (``magnetdml evaluate RUN``), and ``tuned.json`` holds the tuned configs
(``--tuned DIR`` lets another experiment reuse them). The analysis is
:mod:`.finegrained_analysis`.
"""

from __future__ import annotations

from pathlib import Path

from .benchmark_figures import slug
from .benchmark_plan import Plan, benchmark_plan
from .runner import EXPERIMENTS, Experiment, RunOutcome, RunSpec

#: The losses of ``benchmarks/benchmark_runs.sh finegrained`` (README table (a)).
LOSSES = (
    "softmax",
    "triplet",
    "magnet",
    "pml:ProxyAnchorLoss",
    "pml:MultiSimilarityLoss",
    "pml:NormalizedSoftmaxLoss",
    "pml:SoftTripleLoss",
)
#: The losses of the paper's claims: the scratch controls and the hierarchy runs.
PAPER_LOSSES = ("softmax", "triplet", "magnet")
#: The quick version's losses (minutes).
QUICK_LOSSES = PAPER_LOSSES
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
#: The fewest characters of a target: the benchmark's batches take P = min(8, classes) of them.
CLASSES = 155
STARTS = ("pretrained", "scratch")
#: benchmark_runs.sh's settings: the drawer split (as its --data.options text), every run's
#: model and passes (small CNN, 64-d head, one real pass per epoch, no warm start: the
#: pretraining is the warm start), the pretraining, and the budget of every loss.
DRAWERS = "test_drawers: [16, 17, 18, 19, 20], val_drawers: [14, 15]"
OMNIGLOT = {
    "model.backbone": "small-cnn",
    "model.embedding_dim": 64,
    "train.iterations_per_epoch": 0,
    "train.warm_start_epochs": 0,
}
PRETRAIN = {"loss.name": "softmax", "train.lr": 0.05, "train.epochs": 3, "train.seed": 0}
TRIALS, SEEDS, MAX_EPOCHS, PATIENCE = 8, 3, 60, 6
HIERARCHY_TARGET, HIERARCHY_CLUSTERS = "indic", 4
PRETRAINED = "pretrain"


def data_options(target: str | None) -> str:
    """``data.options`` of a target (None: all 964 characters) with the drawer split, in the
    text ``benchmarks/benchmark_runs.sh`` gives (YAML: alphabet names with ( ) stay intact)."""
    if target is None:
        return f"{{{DRAWERS}}}"
    return f"{{alphabets: [{', '.join(TARGETS[target])}], {DRAWERS}}}"


def target_plan(
    target: str,
    start: str,
    *,
    losses=LOSSES,
    seeds: int = SEEDS,
    epochs: int = MAX_EPOCHS,
    patience: int = PATIENCE,
) -> Plan:
    """The benchmark of one target and start: ``magnetdml benchmark --protocols seen`` with
    ``benchmark_runs.sh``'s flags (``--model.init_from`` the pretraining when ``start`` is
    ``pretrained``), its searches and runs named ``<target>-<start>-seen-<loss>[-s<seed>]``."""
    return benchmark_plan(
        "omniglot",
        losses,
        seeds=seeds,
        epochs=epochs,
        patience=patience,
        protocols=("seen",),
        overrides={**OMNIGLOT, "data.options": data_options(target), "data.val_fraction": 0},
        classes=CLASSES,
        prefix=f"{target}-{start}-",
        init_from=PRETRAINED if start == "pretrained" else None,
        labels={"dataset": "omniglot", "target": target, "start": start},
    )


class FineGrained(Experiment):
    name = "finegrained"
    description = (
        "The paper's regime (§4.1) on Omniglot: softmax pretraining on all 964 "
        "characters for a few passes, then softmax, triplet, Magnet and the field's "
        "modern losses fine-tuned on three fine-grained groups of alphabets by the "
        "benchmark's engine (an Optuna study per loss, then seeds trained until the "
        "validation error stops improving); from-scratch controls, convergence speed "
        "(Fig. 5) and hierarchy recovery (§4.3)."
    )
    keeps_models = True

    def _plan(self, quick: bool) -> dict:
        if quick:  # minutes: one target, one seed, the paper's losses, a few passes
            return {
                "targets": tuple(TARGETS)[:1],
                "losses": QUICK_LOSSES,
                "seeds": 1,
                "pretrain_epochs": 1,
                "max": 4,
                "patience": 2,
                "trials": 2,
                "reference": None,
            }
        return {
            "targets": tuple(TARGETS),
            "losses": LOSSES,
            "seeds": SEEDS,
            "pretrain_epochs": PRETRAIN["train.epochs"],
            "max": MAX_EPOCHS,
            "patience": PATIENCE,
            "trials": TRIALS,
            "reference": 50,
        }

    def _plans(self, quick: bool) -> dict[tuple[str, str], Plan]:
        """``(target, start) -> its benchmark plan``: every loss from the pretrained start,
        the paper's from scratch."""
        plan = self._plan(quick)
        budget = {"seeds": plan["seeds"], "epochs": plan["max"], "patience": plan["patience"]}
        return {
            (target, start): target_plan(
                target,
                start,
                losses=[
                    loss for loss in plan["losses"] if start == "pretrained" or loss in PAPER_LOSSES
                ],
                **budget,
            )
            for target in plan["targets"]
            for start in STARTS
        }

    def pretraining(self, quick: bool) -> list[RunSpec]:
        plan = self._plan(quick)
        base = {"data.name": "omniglot", **OMNIGLOT, **PRETRAIN, "data.options": data_options(None)}
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
        plans = self._plans(quick)
        specs = [
            RunSpec(
                s.name, s.overrides, {**s.group, "task": "classification"}, s.init_from, s.pinned
            )
            for plan in plans.values()
            for s in plan.runs
        ]
        target = self._plan(quick)["targets"][0] if quick else HIERARCHY_TARGET
        for s in plans[(target, "pretrained")].runs:  # its tuned configs, on pairs of characters
            loss = s.group["loss"]
            if loss not in PAPER_LOSSES:
                continue
            specs.append(
                RunSpec(
                    f"{target}-pairs-{slug(loss)}-s{s.group['seed']}",
                    {
                        **s.overrides,
                        "data.collapse_pairs": True,
                        "index.clusters_per_class": HIERARCHY_CLUSTERS,
                    },
                    {**s.group, "task": "hierarchy"},
                    init_from=s.init_from,
                    pinned=(*s.pinned, "index.clusters_per_class"),
                )
            )
        return specs

    def tuning(self, quick: bool) -> list[RunSpec]:
        return [spec for plan in self._plans(quick).values() for spec in plan.tuning]

    def tuning_trials(self, quick: bool) -> int:
        return self._plan(quick)["trials"]

    def analyse(self, out_dir: Path, runs: dict[str, RunOutcome]) -> dict:
        from .finegrained_analysis import analyse

        return analyse(Path(out_dir), runs, self.tuned)


EXPERIMENTS.register("finegrained")(FineGrained)
